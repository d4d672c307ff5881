"""What each exit code of `apns-connector` means, and the errors that lead to them.

Every command ends with one of these, and says why on one line of stderr:

    0    done
    1    the work failed: Apple refused the notification, Kafka or APNs could not be
         reached, a line of input is not a request
    2    the command line, a file it names, or the settings are wrong; nothing was done
    130  interrupted by Ctrl-C before it was done

`run`, `tail` and `simulator` stop on SIGTERM or Ctrl-C as their normal end, with 0.
"""

from __future__ import annotations

from connector.errors import ConnectorError

OK = 0
FAILURE = 1
USAGE = 2
INTERRUPTED = 130

SUMMARY = """exit codes:
  0    done
  1    the work failed: Apple refused the notification, Kafka or APNs could not
       be reached, a line of input is not a request
  2    the command line, a file it names, or the settings are wrong; nothing done
  130  interrupted by Ctrl-C (run, tail and simulator end with 0 on it)"""


class UsageError(ConnectorError):
    """The command line or a file it names is wrong; the message says which."""


class CommandFailed(ConnectorError):
    """The command ran and the work failed; the message says what happened."""
