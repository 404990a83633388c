/* fdloop.backends.linux._clone_spawn: start a child whose pidfd is made by the spawn itself.
 *
 * posix_spawn(3) returns a pid, and a pidfd opened from that pid afterwards names the
 * right process only while nobody else has reaped it: with SIGCHLD at SIG_IGN (the kernel
 * reaps at exit) and pids recycling fast, the number can already belong to another of our
 * children by the time pidfd_open runs, and no check made afterwards can tell the two
 * apart. clone3 (or clone(2)) with CLONE_PIDFD hands back a pidfd for the new task as
 * part of the same system call, before the child can run, exit or be reaped, so the fd
 * always names the process we started. Which of the two calls starts it, and on what
 * stack, is _clone3.c's business.
 *
 * The child is started the way glibc's posix_spawn starts one: CLONE_VM | CLONE_VFORK on a
 * stack of its own, so the parent is suspended only until the child calls execve (no
 * page-table copy, whatever the parent's size), and exec or set-up failures are reported
 * through memory the two share. Every signal is blocked in the calling thread around
 * the call so that no handler of the parent runs in the child while it shares our memory;
 * every handled signal is reset to SIG_DFL in the child (by the kernel, with clone3's
 * CLONE_CLEAR_SIGHAND, else by the child itself) before it installs its own mask.
 *
 * What the child does before execve is in _child.c.
 */
#include "_clone_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>


/* NULL-terminated char *[] over a sequence of bytes (borrowed: `seq` keeps them). */
static char **
string_array(PyObject *seq, const char *name)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    char **array = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    if (array == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s items must be bytes", name);
            PyMem_Free(array);
            return NULL;
        }
        array[i] = PyBytes_AS_STRING(item);
    }
    return array;
}

static int
int_array(PyObject *seq, const char *name, int **out, Py_ssize_t *count)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int *array = PyMem_Calloc((size_t)n + 1, sizeof(int));
    if (array == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long value = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (value == -1 && PyErr_Occurred()) {
            PyMem_Free(array);
            return -1;
        }
        if (value < 0 || value > INT_MAX) {
            PyErr_Format(PyExc_ValueError, "%s item out of range: %ld", name, value);
            PyMem_Free(array);
            return -1;
        }
        array[i] = (int)value;
    }
    *out = array;
    *count = n;
    return 0;
}

static void
reap_failed_child(int pidfd)
{
    siginfo_t info;
    /* The child has already called _exit (clone returned because it did). ECHILD: the
     * kernel reaped it itself (SIGCHLD at SIG_IGN). */
    while (waitid((idtype_t)FDLOOP_P_PIDFD, (id_t)pidfd, &info, WEXITED) < 0 && errno == EINTR)
        ;
}

/* OSError(err, text) for a spawn into cgroup_fd that the kernel refused: the text names
 * cgroup_fd and what the errno means for CLONE_INTO_CGROUP (OSError's constructor picks
 * the subclass, e.g. PermissionError, from err). */
static void
raise_cgroup_error(int cgroup_fd, int err)
{
    const char *why;
    switch (err) {
    case ENOSYS:
        why = "CLONE_INTO_CGROUP needs clone3, which is refused here or not built for this "
              "CPU (the clone(2) fallback cannot start a child in a cgroup)";
        break;
    case EBADF:
        why = "not an open cgroup v2 directory";
        break;
    case EINVAL:
        why = "refused by clone3 (CLONE_INTO_CGROUP needs Linux 5.7)";
        break;
    case EBUSY:
    case EOPNOTSUPP:
        why = "a cgroup that cannot take processes (controllers enabled in its "
              "cgroup.subtree_control, or a threaded/invalid domain)";
        break;
    default:
        why = strerror(err);
        break;
    }
    PyObject *text = PyUnicode_FromFormat("cgroup_fd %d: %s (%s)", cgroup_fd, why,
                                          strerror(err));
    if (text == NULL)
        return;
    /* As PyErr_SetFromErrno does: OSError(err, text), made into its subclass. */
    PyObject *value = Py_BuildValue("(iN)", err, text);
    if (value == NULL)
        return;
    PyErr_SetObject(PyExc_OSError, value);
    Py_DECREF(value);
}

PyDoc_STRVAR(spawn_doc,
"spawn(path, argv, envp, stdio, cwd, pass_fds, pass_sources, close_fds, keep_below,\n"
"      setsid, pgid,\n"
"      umask, sigdefault, uid, gid, groups, pdeathsig, parent, cgroup_fd=-1)\n"
"      -> (pid, pidfd, error, step)\n"
"\n"
"Start `path` as a child with clone3 (or clone, see variant()) and the flags\n"
"CLONE_VM | CLONE_VFORK | CLONE_PIDFD.\n"
"On success error and step are 0 and the caller owns pidfd (O_CLOEXEC). If the child\n"
"could not be set up or exec'd, it has been reaped, pid and pidfd are -1, and error is\n"
"the errno of the step that failed (see STEP_* constants). envp None: our environ.\n"
"stdio: three fds (-1: inherit). pass_fds[i] becomes a copy of pass_sources[i].\n"
"keep_below > 0 (close_fds only, and every fd the child needs below it): the clone\n"
"shares our fd table and the child keeps a private copy of only the fds below it, so\n"
"the parent's wait does not grow with the fds it has open; 0 copies the whole table.\n"
"pgid, umask, uid, gid: -1 to leave as is; groups None to leave as is. pdeathsig\n"
"(0: none) is armed with PR_SET_PDEATHSIG, and the child exits 125 at once if its\n"
"parent is no longer `parent` by then. cgroup_fd >= 0 (an fd of a cgroup v2 directory)\n"
"starts the child in that cgroup (clone3's CLONE_INTO_CGROUP): an OSError naming\n"
"cgroup_fd if the kernel refuses, ENOSYS where only clone is usable (variant()).\n"
"OSError is raised only if the clone itself failed (EAGAIN, ENOMEM, the cgroup): then\n"
"no process was started and no fd is left.");

static PyObject *
clone_spawn(PyObject *module, PyObject *args)
{
    PyObject *path_obj, *argv_obj, *envp_obj, *cwd_obj, *pass_obj, *sources_obj, *sigdef_obj,
             *groups_obj;
    int stdio0, stdio1, stdio2, close_fds, keep_below, do_setsid, pgid, mask, pdeathsig,
        parent, cgroup_fd = -1;
    long long uid, gid;
    if (!PyArg_ParseTuple(args, "OOO(iii)OOOpipiiOLLOii|i:spawn", &path_obj, &argv_obj,
                          &envp_obj, &stdio0, &stdio1, &stdio2, &cwd_obj, &pass_obj,
                          &sources_obj, &close_fds, &keep_below, &do_setsid, &pgid, &mask,
                          &sigdef_obj, &uid, &gid, &groups_obj, &pdeathsig, &parent,
                          &cgroup_fd))
        return NULL;
    if (keep_below != 0 && (!close_fds || keep_below < 3)) {
        PyErr_SetString(PyExc_ValueError, "keep_below must be 0, or >= 3 with close_fds");
        return NULL;
    }
    if (!PyBytes_Check(path_obj)) {
        PyErr_SetString(PyExc_TypeError, "path must be bytes");
        return NULL;
    }
    if (cwd_obj != Py_None && !PyBytes_Check(cwd_obj)) {
        PyErr_SetString(PyExc_TypeError, "cwd must be bytes or None");
        return NULL;
    }

    struct request r;
    memset(&r, 0, sizeof r);
    PyObject *argv_seq = NULL, *envp_seq = NULL, *pass_seq = NULL, *sources_seq = NULL,
             *sigdef_seq = NULL, *groups_seq = NULL, *result = NULL;
    Py_ssize_t n_sources = 0;
    int *sigdef = NULL, *groups = NULL;
    Py_ssize_t n_sigdef = 0, n_groups = 0;

    argv_seq = PySequence_Fast(argv_obj, "argv must be a sequence");
    if (argv_seq == NULL || (r.argv = string_array(argv_seq, "argv")) == NULL)
        goto done;
    if (envp_obj != Py_None) {
        envp_seq = PySequence_Fast(envp_obj, "envp must be a sequence");
        if (envp_seq == NULL || (r.envp = string_array(envp_seq, "envp")) == NULL)
            goto done;
    }
    pass_seq = PySequence_Fast(pass_obj, "pass_fds must be a sequence");
    if (pass_seq == NULL || int_array(pass_seq, "pass_fds", &r.pass_fds, &r.n_pass) < 0)
        goto done;
    sources_seq = PySequence_Fast(sources_obj, "pass_sources must be a sequence");
    if (sources_seq == NULL
        || int_array(sources_seq, "pass_sources", &r.pass_sources, &n_sources) < 0)
        goto done;
    if (n_sources != r.n_pass) {
        PyErr_SetString(PyExc_ValueError, "pass_sources must be as long as pass_fds");
        goto done;
    }
    sigdef_seq = PySequence_Fast(sigdef_obj, "sigdefault must be a sequence");
    if (sigdef_seq == NULL || int_array(sigdef_seq, "sigdefault", &sigdef, &n_sigdef) < 0)
        goto done;
    sigemptyset(&r.sigdefault);
    for (Py_ssize_t i = 0; i < n_sigdef; i++) {
        if (sigdef[i] < 1 || sigdef[i] >= NSIG) {
            PyErr_Format(PyExc_ValueError, "invalid signal number %d", sigdef[i]);
            goto done;
        }
        sigaddset(&r.sigdefault, sigdef[i]);
    }
    r.n_groups = -1;
    if (groups_obj != Py_None) {
        groups_seq = PySequence_Fast(groups_obj, "groups must be a sequence");
        if (groups_seq == NULL || int_array(groups_seq, "groups", &groups, &n_groups) < 0)
            goto done;
        r.n_groups = (int)n_groups;
        /* gid_t is unsigned int, the same size as int on Linux */
        r.groups = (gid_t *)groups;
    }
    if (uid >= 0) {
        r.set_uid = 1;
        r.uid = (uid_t)uid;
    }
    if (gid >= 0) {
        r.set_gid = 1;
        r.gid = (gid_t)gid;
    }
    r.path = PyBytes_AS_STRING(path_obj);
    r.cwd = cwd_obj == Py_None ? NULL : PyBytes_AS_STRING(cwd_obj);
    r.stdio[0] = stdio0;
    r.stdio[1] = stdio1;
    r.stdio[2] = stdio2;
    r.close_fds = close_fds;
    r.keep_below = keep_below;
    r.setsid = do_setsid;
    r.pgid = pgid;
    r.umask = mask;
    r.pdeathsig = pdeathsig;
    r.parent = (pid_t)parent;
    if (r.envp == NULL)
        r.envp = environ;

    int pidfd = -1;
    long pid;
    sigset_t all, old;
    sigfillset(&all);
    Py_BEGIN_ALLOW_THREADS
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = fdloop_start_child(fdloop_child_main, &r, keep_below > 0, cgroup_fd, &pidfd,
                             &r.handlers_cleared);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid > 0 && r.error != 0) {
        reap_failed_child(pidfd);
        close(pidfd);
    }
    Py_END_ALLOW_THREADS
    if (pid < 0) {
        if (cgroup_fd >= 0)
            raise_cgroup_error(cgroup_fd, (int)-pid);
        else {
            errno = (int)-pid;
            PyErr_SetFromErrno(PyExc_OSError);
        }
        goto done;
    }
    if (r.error != 0)
        result = Py_BuildValue("(iiii)", -1, -1, r.error, r.step);
    else
        result = Py_BuildValue("(iiii)", (int)pid, pidfd, 0, 0);

done:
    if (r.envp != environ)
        PyMem_Free(r.envp);
    PyMem_Free(r.argv);
    PyMem_Free(r.pass_fds);
    PyMem_Free(r.pass_sources);
    PyMem_Free(sigdef);
    PyMem_Free(groups);
    Py_XDECREF(argv_seq);
    Py_XDECREF(envp_seq);
    Py_XDECREF(pass_seq);
    Py_XDECREF(sources_seq);
    Py_XDECREF(sigdef_seq);
    Py_XDECREF(groups_seq);
    return result;
}

PyDoc_STRVAR(reap_doc,
"reap(pidfd, options) -> None | (pid, wait_status, user_cpu, system_cpu, max_rss)\n"
"\n"
"waitid(P_PIDFD, pidfd, options) with the kernel's rusage (glibc's waitid hides it):\n"
"None if WNOHANG found the child running, else its pid, the wait(2) status word, CPU\n"
"seconds and peak RSS in bytes. EINTR is retried; ECHILD raises ChildProcessError.\n"
"Without WNOHANG the GIL is released while it waits.");

static PyObject *
reap_pidfd(PyObject *module, PyObject *args)
{
    int fd, options;
    if (!PyArg_ParseTuple(args, "ii:reap", &fd, &options))
        return NULL;
    siginfo_t info;
    struct rusage usage;
    long rc;
    /* Since Linux 4.13 waitid writes every siginfo field it reports, si_pid = 0
     * included when WNOHANG found nothing; zeroed anyway, it costs nothing here. */
    memset(&info, 0, sizeof info);
    memset(&usage, 0, sizeof usage);
    for (;;) {
        if (options & WNOHANG) {
            rc = syscall(SYS_waitid, FDLOOP_P_PIDFD, fd, &info, options, &usage);
        } else {
            Py_BEGIN_ALLOW_THREADS
            rc = syscall(SYS_waitid, FDLOOP_P_PIDFD, fd, &info, options, &usage);
            Py_END_ALLOW_THREADS
        }
        if (rc == 0)
            break;
        if (errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    if (info.si_pid == 0)
        Py_RETURN_NONE;
    return fdloop_exit_tuple(&info, &usage);
}

PyObject *
fdloop_exit_tuple(const siginfo_t *info, const struct rusage *usage)
{
    int status;
    if (info->si_code == CLD_EXITED)
        status = (info->si_status & 0xFF) << 8;
    else
        status = (info->si_status & 0x7F) | (info->si_code == CLD_DUMPED ? 0x80 : 0);
    return Py_BuildValue(
        "(iiddL)", (int)info->si_pid, status,
        (double)usage->ru_utime.tv_sec + (double)usage->ru_utime.tv_usec / 1e6,
        (double)usage->ru_stime.tv_sec + (double)usage->ru_stime.tv_usec / 1e6,
        (long long)usage->ru_maxrss * 1024);  /* Linux reports ru_maxrss in KiB */
}

PyDoc_STRVAR(variant_doc,
"variant() -> 'clone3' | 'clone'\n"
"\n"
"The system call the next spawn() starts its child with: clone3 where this kernel, its\n"
"seccomp filter and our build allow it (probed at import; a spawn refused with ENOSYS\n"
"or EPERM switches to clone for good), else clone.");

static PyObject *
clone_variant(PyObject *module, PyObject *unused)
{
    return PyUnicode_FromString(fdloop_variant());
}

static PyMethodDef methods[] = {
    {"spawn", clone_spawn, METH_VARARGS, spawn_doc},
    {"variant", clone_variant, METH_NOARGS, variant_doc},
    {"reap", reap_pidfd, METH_VARARGS, reap_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_clone_spawn",
    "clone3/clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) spawning, whose pidfd comes from the\n"
    "spawn, reaping through that pidfd with rusage, and a ready set's arm/collect.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__clone_spawn(void)
{
    if (fdloop_clone3_init() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddFunctions(m, fdloop_ready_set_methods) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    static const struct { const char *name; int value; } steps[] = {
        {"STEP_UNSHARE_FDS", STEP_UNSHARE_FDS}, {"STEP_PDEATHSIG", STEP_PDEATHSIG}, {"STEP_SETSID", STEP_SETSID}, {"STEP_SETPGID", STEP_SETPGID},
        {"STEP_STDIO", STEP_STDIO}, {"STEP_CWD", STEP_CWD}, {"STEP_GROUPS", STEP_GROUPS},
        {"STEP_GID", STEP_GID}, {"STEP_UID", STEP_UID}, {"STEP_CLOSE_FDS", STEP_CLOSE_FDS},
        {"STEP_PASS_FDS", STEP_PASS_FDS}, {"STEP_EXEC", STEP_EXEC},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (PyModule_AddIntConstant(m, steps[i].name, steps[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
