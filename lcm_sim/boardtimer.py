"""The simulated board's periodic timer: what `machine.Timer` is on a board, for the unix port.

The unix port has no `machine.Timer`, so without this nothing polls the
check timer (lcm_device.checktimer) while an app runs. A thread sleeps one
period at a time and queues the callback for the main thread with
`micropython.schedule`, as checktimer's IRQ handler does on a board: the
callback runs between two bytecodes of the app (or during its sleep), never
beside it.

A reset asked for inside the callback (the check timer's `hal.reset()`, a
SystemExit) cannot leave a scheduled callback: MicroPython prints and drops
any exception raised there. A board's reset does not unwind the app either,
it stops the chip. So the process is ended at once by a signal to itself
(RESET_SIGNAL, or POWER_CUT_SIGNAL for an injected power cut), which
`lcm device simulate` counts as that exit code.
"""

import os
import time

import micropython

from lcm_sim import EXIT_POWER_CUT, POWER_CUT_SIGNAL, RESET_SIGNAL


class ThreadTimer:
    def __init__(self, period_ms, callback):
        import _thread

        self.period_ms = period_ms
        self.callback = callback
        self.running = True
        self._tick_ref = self._tick  # one bound method, not one per period
        _thread.start_new_thread(self._run, ())

    def _run(self):
        while self.running:
            time.sleep_ms(self.period_ms)
            try:
                micropython.schedule(self._tick_ref, None)
            except RuntimeError:
                pass  # the queue is full: the next period tries again

    def _tick(self, _arg):
        try:
            self.callback()
        except SystemExit as exc:
            code = exc.args[0] if exc.args else 0
            stop(POWER_CUT_SIGNAL if code == EXIT_POWER_CUT else RESET_SIGNAL)

    def deinit(self):
        self.running = False


def stop(signal_name):
    """End this process now with SIG`signal_name` (the unix port has no os._exit or os.kill:
    the shell that os.system starts has this process as its parent)."""
    os.system("kill -" + signal_name + " $PPID")
    # Not reached when the signal arrived; a shell that could not send it is a broken host.
    print("lcm-hal: could not send SIG" + signal_name + " to stop the simulated board")
