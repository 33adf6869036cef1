"""What follows the app once its main module returned or raised, wherever it was started
(lcm_device.boot, or /main.py in the app boot after an update boot).

A module of its own, loaded once the app has ended: the app's heap never holds
it. It loads no more than it needs (the log, mainfile).
"""

from lcm_device.hal import get


def after_app(tag, failure):
    """The app `tag` returned (`failure` None: it ran healthy, confirmed) or raised (the
    exception as text: a failed trial boot, logged, then a reset)."""
    hal = get()
    if failure is not None:
        _log("app: " + str(tag) + " failed: " + failure)
    try:
        from lcm_device import mainfile

        mainfile.restore(hal, _log)  # when /main.py or /lcm/pick.py is gone
    except OSError as exc:  # a full or read-only flash: the check timer tries again
        _log(
            "boot: cannot restore /main.py or /lcm/pick.py: OSError "
            + str(exc.args[0] if exc.args else "")
        )
    if failure is not None:
        hal.reset()
    from lcm_device.app import confirm

    confirm()


def _log(text):
    from lcm_device.log import log

    log(text)
