"""What Linux and the BSDs share: the POSIX layer under both backends.

* :mod:`.posix_spawn`: starting a child with posix_spawn(3) through ctypes (the
  fallback path of the Linux backend; its flag values are glibc's).
* :mod:`.exec_path`: the PATH search that execvp(3) would make, done before the start.
* :mod:`.pipe`: the parent's end of a child's pipe, and private blocking openings.
* :mod:`.shmfile`: a shared-memory file (memfd_create or shm_open), read, written,
  mapped and sealed with the same calls everywhere.
* :mod:`.nowait`: non-blocking reads of an adopted fd without touching its flags.
* :mod:`.fdlimit`: RLIMIT_NOFILE, and naming it when it is reached.
* :mod:`.sigmask`: the process-wide books of signals taken over from ordinary delivery.
* :mod:`.channel`: the Channel's hang-up socketpair and whether this CPU can carry one.
* :mod:`.vpoll_socket`: a VirtualFD built from a loopback TCP connection.

Nothing here imports :mod:`fdloop.backends.linux` or :mod:`fdloop.backends.kqueue`.
"""
