"""What every unfinished asyncio task is waiting on, for a test that is about to time out.

pytest-timeout dumps the threads' stacks, which for an asyncio test show only the event loop
idling in select(); the coroutine that never resumes is invisible there. This walks each pending
task's await chain (coroutines, async generators) down to the future it waits for."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings


def _await_chain(task: asyncio.Task) -> list[str]:
    lines, awaited = [], task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) \
            or getattr(awaited, "gi_frame", None)
        if frame is None:
            lines.append(f"    waits on {awaited!r:.200}")
            break
        lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None) \
            or getattr(awaited, "gi_yieldfrom", None)
    return lines


def pending_tasks_report() -> str:
    with warnings.catch_warnings():  # isinstance on every live object trips deprecated module attributes
        warnings.simplefilter("ignore")
        tasks = [obj for obj in gc.get_objects() if isinstance(obj, asyncio.Task) and not obj.done()]
    lines = [f"{len(tasks)} asyncio task(s) pending:"]
    for task in tasks:
        lines += [f"  task {task.get_name()}", *_await_chain(task)]
    return "\n".join(lines)


def report_before(seconds: float) -> threading.Timer:
    """A started timer that prints the pending tasks after `seconds` (cancel it when the test ends)."""
    timer = threading.Timer(seconds, lambda: print(pending_tasks_report(), flush=True))
    timer.daemon = True
    timer.start()
    return timer
