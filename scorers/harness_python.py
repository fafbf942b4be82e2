"""The Python harness: the program that runs a task's tests around ``solution.py``.

The protocol (key, report lines) is in ``scorers/harness.py``; the harness reads a JSON
request ``{"key", "tests", "profile"}`` from stdin and reopens fd 0 on /dev/null before the
solution is loaded. Against cheating:

* All harness state lives in one function's locals; every builtin it uses is captured before
  the solution runs. (This is why ``_rfai_main`` is one long function: its helpers are nested
  closures, out of the solution's reach, and the profiler skips exactly its code objects.)
* An audit hook refuses frame and gc introspection (``sys._getframe``,
  ``tb_frame``/``gi_frame``/``__code__``..., ``gc.get_objects``/``get_referrers``),
  ``sys.settrace``/``setprofile``, ``ctypes``, running other programs (``os.exec*``,
  ``subprocess``, ``os.system``, and importing ``_posixsubprocess``, whose ``fork_exec``
  raises no audit event) and opening ``/proc``. typing, ``collections.namedtuple`` and the
  ``Enum`` functional API may still call ``sys._getframe`` (matched by code object): they
  only read their caller's module name.
* Each test snippet is rewritten (AST) so that comparisons, arithmetic, f-string values,
  truth tests and arguments of builtins only ever see builtin values, all the way down: an
  object of a class written in Python (``__eq__`` always true) fails the test, unless both
  compared sides are exactly the same class (one the test builds). Compared values must be
  of a fixed set of builtin types (numbers, str, bytes, None, range, type, and list, tuple,
  set, dict, deque, dict views of them); C wrappers that delegate to an object inside them
  (``weakref.proxy``, ``MappingProxyType``) are refused everywhere. ``collections.Counter``
  is compared as a dict; other C types (``decimal.Decimal``, ``datetime``) are refused.
  Tests see the builtins as they were before the solution ran.
* With ``profile`` it counts executed lines (every frame that is not the harness's or a test
  snippet's, so code the solution compiles under another file name counts too) and reports
  whether the count can be trusted (not when a refused call was tried, the program forked,
  left threads running, or ran any child process: the harness reaps every child, orphans
  included as it is the PID namespace's init, and reads RUSAGE_CHILDREN, a second line
  behind the refused ways of starting programs). Code objects are matched by
  identity. Threads started by ``threading`` count into a separate counter.

Not covered: a raw ``_thread`` thread that starts and ends during profiling is not seen (3.11
has no audit event for it); ``threading.gettrace()`` hands the solution the thread tracer,
whose closure it can edit to stop counting work done in threads (not the main count).
A program that recurses until RecursionError in profile mode turns tracing off, which the
audit hook refuses: its efficiency is 0.
"""

from __future__ import annotations

from scorers.harness import ERROR_CHARS

PYTHON_HARNESS = r"""
def _rfai_main():
    # Everything lives in this function's locals: solution code cannot name them, and the
    # frames that hold them are out of its reach (the audit hook below refuses frame and gc
    # introspection). Capture every builtin used later, before the solution can replace it.
    import _json
    import _thread
    import ast
    import builtins
    import operator
    import os
    import resource
    import sys
    import threading
    import types
    import typing
    import weakref
    from collections import Counter, OrderedDict, defaultdict, deque, namedtuple
    from enum import EnumType

    write, urandom, getcwd, exit_now = os.write, os.urandom, os.getcwd, os._exit
    encode = _json.encode_basestring_ascii
    thread_count = _thread._count
    b_type, b_len, b_str, b_bool, b_id = type, len, str, bool, id
    b_isinstance, b_compile, b_exec, b_dict, b_iter = isinstance, compile, exec, dict, iter
    b_repr, b_list, b_tuple, b_frozenset, b_range = repr, list, tuple, frozenset, range
    b_enumerate, b_sorted = enumerate, sorted
    dict_items, dict_copy = dict.items, dict.copy
    b_BaseException, b_RuntimeError, b_TypeError = BaseException, RuntimeError, TypeError

    payload = sys.stdin.buffer.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    import json as _json_module

    request = _json_module.loads(payload)
    del payload
    key = request["key"]
    tests = request["tests"]
    profile = request["profile"]
    del request
    report_fd = int(os.environ.pop("SANDBOX_REPORT_FD"))

    def emit(body):
        try:
            write(report_fd, (key + " " + body + "\n").encode())
        except OSError:
            exit_now(3)

    def short(exc):
        text = b_type(exc).__name__
        try:
            message = b_str(exc)
        except b_BaseException:
            message = "<unprintable>"
        if b_type(text) is not b_str or b_type(message) is not b_str:
            return "<unprintable>"
        if message:
            text = text + ": " + message
        return text[:ERROR_CHARS]

    def finish():
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except b_BaseException:
                pass  # the program closed or replaced its own stream; nothing to flush
        # Skip interpreter shutdown: threads or atexit hooks left by the program must not run.
        exit_now(0)

    # -- what the tests may compare: no instance of a class defined in Python, anywhere ----
    # A class written in Python (a heap type) can define __eq__, __bool__, __add__ ... to
    # say anything; builtin and C types (int, str, list, dict, range, ...) cannot be patched.
    flags_of = b_type.__dict__["__flags__"].__get__
    heap_type = 1 << 9  # Py_TPFLAGS_HEAPTYPE
    mappings = b_frozenset((b_dict, OrderedDict, defaultdict))
    sequences = b_frozenset((b_list, b_tuple, set, b_frozenset, deque))

    def native_value(item):
        return not flags_of(b_type(item)) & heap_type

    # Compared and truth-tested values must be of these types, all the way down: C types
    # outside this list may delegate to an object inside them (weakref.proxy,
    # MappingProxyType, a NumPy object array compare with their target's __eq__).
    leaf_types = b_frozenset((
        int, float, complex, bool, b_str, bytes, bytearray, b_type(None), b_range,
        b_type(Ellipsis), b_type(NotImplemented), b_type,
    ))  # fmt: skip
    views = b_frozenset((b_type({}.keys()), b_type({}.values()), b_type({}.items())))
    # Wrappers that pass operations through to an object they hold: refused anywhere.
    delegating = b_frozenset((
        weakref.ProxyType, weakref.CallableProxyType, types.MappingProxyType,
    ))  # fmt: skip

    def exact(value, strict=True):
        # strict: comparisons and truth tests see only leaf_types in builtin containers;
        # otherwise (arguments of builtins, arithmetic) no Python class and no delegating
        # wrapper anywhere in a builtin container.
        if b_type(value) is Counter:  # a Python class the solution could patch: as a dict
            value = dict_copy(value)
        stack = [value]
        seen = set()
        while stack:
            item = stack.pop()
            kind = b_type(item)
            if flags_of(kind) & heap_type or kind in delegating or (
                strict and kind not in leaf_types and kind not in mappings
                and kind not in sequences and kind not in views
            ):
                raise b_TypeError(
                    "rfai: a test used a %s object; tests compare builtin values only"
                    % kind.__name__
                )
            if kind is b_type and flags_of(item) & heap_type:
                continue  # a class object compares by identity unless its metaclass says
            if (kind in mappings or kind in sequences or kind in views) and (
                b_id(item) not in seen
            ):
                seen.add(b_id(item))
                if kind in mappings:
                    for pair in dict_items(item):
                        stack.extend(pair)
                else:
                    stack.extend(b_iter(item))
        return value

    def same_class(left, right):
        # Exactly the same class defined in Python on both sides: one the test constructs.
        kind = b_type(left)
        return kind is b_type(right) and flags_of(kind) & heap_type

    compare_ops = {
        "Eq": operator.eq, "NotEq": operator.ne, "Lt": operator.lt, "LtE": operator.le,
        "Gt": operator.gt, "GtE": operator.ge, "Is": operator.is_, "IsNot": operator.is_not,
    }  # fmt: skip
    arith_ops = {
        "Add": operator.add, "Sub": operator.sub, "Mult": operator.mul,
        "MatMult": operator.matmul, "Div": operator.truediv, "FloorDiv": operator.floordiv,
        "Mod": operator.mod, "Pow": operator.pow, "LShift": operator.lshift,
        "RShift": operator.rshift, "BitOr": operator.or_, "BitXor": operator.xor,
        "BitAnd": operator.and_, "USub": operator.neg, "UAdd": operator.pos,
        "Invert": operator.invert,
    }  # fmt: skip
    contains = operator.contains

    def rfai_compare(left, *rest):
        for position in b_range(0, b_len(rest), 2):
            name, right = rest[position], rest[position + 1]
            if name in ("Is", "IsNot"):
                outcome = compare_ops[name](left, right)
            else:
                a, b = (left, right) if same_class(left, right) else (exact(left), exact(right))
                if name == "In":
                    outcome = rfai_truth(contains(b, a))
                elif name == "NotIn":
                    outcome = not rfai_truth(contains(b, a))
                else:
                    outcome = rfai_truth(compare_ops[name](a, b))
            if not outcome:
                return False
            left = right
        return True

    def rfai_truth(value):
        if not native_value(value) or b_type(value) in delegating:
            raise b_TypeError(
                "rfai: a test took the truth of a %s object; tests check builtin values only"
                % b_type(value).__name__
            )
        return b_bool(value)

    def rfai_arith(name, left, *right):
        if right and same_class(left, right[0]):
            return arith_ops[name](left, right[0])
        return arith_ops[name](exact(left, False), *[exact(r, False) for r in right])

    def rfai_format(value):
        return exact(value, False)

    def rfai_call(function, *args, **kwargs):
        # A builtin (len, sorted, str, ...) given a solution's object would run that object's
        # methods for the test: builtins get builtin values only.
        if native_value(function) and (
            b_type(function) is not b_type or not flags_of(function) & heap_type
        ):
            for arg in args:
                exact(arg, False)
            for arg in kwargs.values():
                exact(arg, False)
        return function(*args, **kwargs)

    helpers = {
        "_rfai_compare": rfai_compare, "_rfai_truth": rfai_truth, "_rfai_arith": rfai_arith,
        "_rfai_format": rfai_format, "_rfai_call": rfai_call,
    }  # fmt: skip

    class Checked(ast.NodeTransformer):
        # Rewrites a test so every comparison, truth test and operand is checked.

        def call(self, name, node, *extra):
            return ast.Call(ast.Name(name, ast.Load()), [node, *extra], [])

        def visit_Compare(self, node):
            self.generic_visit(node)
            args = [node.left]
            for op, right in zip(node.ops, node.comparators):
                args += [ast.Constant(b_type(op).__name__), right]
            return ast.Call(ast.Name("_rfai_compare", ast.Load()), args, [])

        def visit_Assert(self, node):
            self.generic_visit(node)
            node.test = self.call("_rfai_truth", node.test)
            return node

        def truth_of(self, node):
            self.generic_visit(node)
            node.test = self.call("_rfai_truth", node.test)
            return node

        visit_If = visit_While = visit_IfExp = truth_of

        def visit_BoolOp(self, node):
            self.generic_visit(node)
            node.values = [self.call("_rfai_truth", value) for value in node.values]
            return node

        def visit_UnaryOp(self, node):
            self.generic_visit(node)
            if b_isinstance(node.op, ast.Not):
                node.operand = self.call("_rfai_truth", node.operand)
                return node
            name = ast.Constant(b_type(node.op).__name__)
            return ast.Call(ast.Name("_rfai_arith", ast.Load()), [name, node.operand], [])

        def visit_BinOp(self, node):
            self.generic_visit(node)
            name = ast.Constant(b_type(node.op).__name__)
            args = [name, node.left, node.right]
            return ast.Call(ast.Name("_rfai_arith", ast.Load()), args, [])

        def visit_FormattedValue(self, node):
            self.generic_visit(node)
            node.value = self.call("_rfai_format", node.value)
            return node

        def visit_comprehension(self, node):
            self.generic_visit(node)
            node.ifs = [self.call("_rfai_truth", test) for test in node.ifs]
            return node

        def visit_Call(self, node):
            self.generic_visit(node)
            node.args = [node.func, *node.args]
            node.func = ast.Name("_rfai_call", ast.Load())
            return node

    nonce = urandom(8).hex()
    with open("solution.py", encoding="utf-8") as handle:
        source = handle.read()
    try:
        code = b_compile(source, "solution.py", "exec")
    except (SyntaxError, ValueError) as exc:
        emit('{"event": "compile_error", "error": %s}' % encode(short(exc)))
        finish()
    compiled_tests = []
    for index, test in b_enumerate(tests):
        try:
            tree = ast.fix_missing_locations(Checked().visit(ast.parse(test)))
            compiled_tests.append(b_compile(tree, "<test %d %s>" % (index, nonce), "exec"))
        except (SyntaxError, ValueError, RecursionError) as exc:
            compiled_tests.append(exc)
    del tests

    # -- the profile: lines of every frame that is not the harness's or a test's own -------
    own_code = set()

    def collect(code_object):
        own_code.add(code_object)
        for const in code_object.co_consts:
            if b_type(const) is b_type(code_object):
                collect(const)

    for item in compiled_tests:
        if b_type(item) is b_type(code):
            collect(item)
    collect(_rfai_main.__code__)  # every function of the harness is nested in it
    # By identity: code objects compare equal by value, file name not included.
    own_code = b_frozenset(b_id(c) for c in own_code)
    counter = [0]

    def trace(frame, event, arg):
        if b_id(frame.f_code) in own_code:
            return None
        counter[0] += 1  # the "call" event: a function entry costs one
        return local_trace

    def local_trace(frame, event, arg):
        if event == "line":
            counter[0] += 1
        return local_trace

    # Threads started with threading get their own tracer and counter: threading.gettrace()
    # hands that function to the solution, whose closure must not lead to the main counter.
    thread_counter = [0]
    thread_code = own_code

    def thread_trace(frame, event, arg):
        if b_id(frame.f_code) in thread_code:
            return None
        thread_counter[0] += 1
        return thread_local_trace

    def thread_local_trace(frame, event, arg):
        if event == "line":
            thread_counter[0] += 1
        return thread_local_trace

    def children_ran():
        # Work in a child process is not counted. The harness is PID 1 of the sandbox's PID
        # namespace, so orphans come back to it: reap every child, then any child that ever
        # ran and was waited for shows in RUSAGE_CHILDREN (page faults at the least).
        live = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                live = True
                break
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return live or usage.ru_minflt > 0 or usage.ru_utime > 0 or usage.ru_stime > 0

    # -- the audit hook: no frames, gc, tracing, native memory or new programs ------------
    refused_events = b_frozenset((
        "sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile",
        "sys.addaudithook", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen",
        "os.forkpty", "pty.spawn", "sys.monitoring.register_callback",
        "sys.monitoring.use_tool_id", "sys.monitoring.set_events",
        "sys.monitoring.set_local_events", "cpython.run_command",
    ))  # fmt: skip
    restricted_attributes = b_frozenset(
        ("tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "__code__", "gi_code",
         "cr_code", "ag_code", "f_locals", "f_globals")
    )  # fmt: skip
    state = {"armed": False, "tripped": None, "forked": False}

    def under_proc(path):
        if b_type(path) is bytes:
            path = path.decode("utf-8", "replace")
        if b_type(path) is not b_str:
            return False  # a file descriptor
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        return "proc" in path.split("/") or path.startswith("/dev/mem")

    # Standard-library functions that call sys._getframe only to learn their caller's module
    # name (typing.TypeVar/NamedTuple/TypedDict, collections.namedtuple, the Enum functional
    # API). They never hand the frame out, so ordinary solutions that use them keep working.
    # Matched by code object identity: a solution cannot make one of these.
    frame_name_readers = b_frozenset(
        b_id(function.__code__)
        for function in (typing._caller, namedtuple, EnumType._create_)
    )
    get_frame, get_ident = sys._getframe, _thread.get_ident
    checking = set()  # threads inside the check below, whose own sys._getframe is ours

    def name_reader_asked():
        # Frame 0 is this function, 1 the hook, 2 the caller of sys._getframe.
        return b_id(get_frame(2).f_code) in frame_name_readers

    def audit(event, args):
        if not state["armed"] or get_ident() in checking:
            return
        if event == "sys._getframe":
            checking.add(get_ident())
            try:
                if name_reader_asked():
                    return
            finally:
                checking.discard(get_ident())
        refuse = event in refused_events or event.startswith("ctypes.")
        if event == "object.__getattr__" and b_len(args) > 1:
            refuse = args[1] in restricted_attributes
        elif event in ("open", "os.symlink", "os.link", "os.chdir"):
            refuse = b_len(args) > 0 and (under_proc(args[0]) or (
                event != "open" and b_len(args) > 1 and under_proc(args[1])))
        elif event == "os.fork":
            state["forked"] = True
        elif event == "import":
            # fork_exec starts a program without raising "subprocess.Popen" or "os.exec".
            refuse = b_len(args) > 0 and args[0] == "_posixsubprocess"
        if refuse:
            if state["tripped"] is None:
                state["tripped"] = event
            raise b_RuntimeError("rfai harness: %s is not allowed in a solution" % event)

    sys.addaudithook(audit)
    sys.gettrace = lambda: None  # the tracer (and its counter) is not the solution's to see
    threads_before = thread_count()
    if profile:
        threading.settrace(thread_trace)
        sys.settrace(trace)
    namespace = {"__name__": "solution", "__builtins__": builtins}
    # The tests see the builtins as they were before the solution ran.
    pristine = b_dict(builtins.__dict__)
    state["armed"] = True
    try:
        b_exec(code, namespace)
    except b_BaseException as exc:
        emit('{"event": "runtime_error", "error": %s}' % encode(short(exc)))
        finish()
    for index, test_code in b_enumerate(compiled_tests):
        scope = {k: v for k, v in dict_items(namespace) if k not in pristine}
        scope.update(helpers)
        scope["__builtins__"] = pristine
        scope["__name__"] = "solution"
        if b_isinstance(test_code, b_BaseException):
            passed, error = False, short(test_code)
        else:
            try:
                b_exec(test_code, scope)
            except b_BaseException as exc:
                passed, error = False, short(exc)
            else:
                passed, error = True, None
        emit('{"event": "test", "index": %d, "passed": %s, "error": %s}' % (
            index, "true" if passed else "false", "null" if error is None else encode(error)))
    if profile:
        reasons = []
        if state["tripped"] is not None:
            reasons.append("the program tried " + state["tripped"])
        if state["forked"]:
            reasons.append("the program forked (its children's lines are not counted)")
        if thread_count() != threads_before:
            reasons.append("the program left threads running (not counted)")
        if children_ran():
            reasons.append("the program ran child processes (their work is not counted)")
        reason = "; ".join(reasons)
        emit('{"event": "cost", "lines": %d, "trusted": %s, "reason": %s}' % (
            counter[0] + thread_counter[0], "false" if reasons else "true", encode(reason)))
    emit('{"event": "done"}')
    finish()


_rfai_main()
""".replace("ERROR_CHARS", str(ERROR_CHARS))
