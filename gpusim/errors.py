"""Exception types. Every message is one line that names the problem and the fix."""


class GpusimError(ValueError):
    """Base class: bad input or an unavailable resource, explained in one line."""


class DataError(GpusimError):
    """Price data that cannot be used as given (names the column and first bad date)."""


class BackendError(GpusimError):
    """A requested backend is not usable on this machine (names what to install)."""


class SolverError(GpusimError):
    """A convex baseline could not be solved (names the reason and the fix)."""


class DataWarning(UserWarning):
    """Inputs that run but deserve a look: a singular covariance, an asset without variance."""
