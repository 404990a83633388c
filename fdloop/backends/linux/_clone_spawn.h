/* What the parts of fdloop.backends.linux._clone_spawn share (one extension, several files):
 *
 *   _clone_spawn.c  the module: spawn()'s arguments and result, reap(), variant()
 *   _child.c        what the child does between the clone call and execve
 *   _clone3.c       how the child is started: clone3 or clone, the stack it runs on
 *   _ready_set.c    arm() and collect(): the pidfds of a per-loop ready set
 */
#ifndef FDLOOP_CLONE_SPAWN_H
#define FDLOOP_CLONE_SPAWN_H

#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <Python.h>

#include <signal.h>
#include <sys/resource.h>

/* Which step of the child's set-up failed: the parent names the argument behind it. */
enum step {
    STEP_NONE = 0,
    STEP_UNSHARE_FDS,
    STEP_PDEATHSIG,
    STEP_SETSID,
    STEP_SETPGID,
    STEP_STDIO,
    STEP_CWD,
    STEP_GROUPS,
    STEP_GID,
    STEP_UID,
    STEP_CLOSE_FDS,
    STEP_PASS_FDS,
    STEP_EXEC,
};

struct request {
    const char *path;
    char **argv;
    char **envp;
    int stdio[3];        /* the fd to put at 0, 1, 2; -1 leaves ours */
    const char *cwd;     /* NULL: ours */
    int *pass_fds;       /* the fd numbers the program gets, >= 3 */
    int *pass_sources;   /* what each is a copy of (itself, or a private blocking opening) */
    Py_ssize_t n_pass;
    int close_fds;
    int keep_below;      /* > 0: share our fd table, then keep only fds below this */
    int setsid;
    pid_t pgid;          /* -1: no setpgid */
    int umask;           /* -1: ours */
    sigset_t sigdefault; /* set to SIG_DFL even if ignored */
    int set_gid, set_uid;
    gid_t gid;
    uid_t uid;
    int n_groups;        /* -1: keep ours */
    gid_t *groups;
    int pdeathsig;       /* 0: none */
    pid_t parent;        /* who must still be our parent once pdeathsig is armed */
    volatile int handlers_cleared;  /* by the kernel: only sigdefault is left to do */
    /* written by the child, read by the parent once the clone call has returned */
    volatile int error;
    volatile int step;
};

/* The child's side of spawn(): set up as `arg` (a struct request) says, then execve; on
 * failure, error and step are written back and the child exits 127. Never returns. */
int fdloop_child_main(void *arg);

/* Start fn(arg) in a new process sharing our memory (CLONE_VM | CLONE_VFORK | CLONE_PIDFD,
 * plus CLONE_FILES when share_files), on a stack kept for the calling thread, and return
 * once it has exec'd or exited. Returns its pid and sets *pidfd, or returns -errno (nothing
 * was started). cgroup_fd >= 0 starts it in that cgroup v2 directory (CLONE_INTO_CGROUP):
 * -ENOSYS where only clone() is usable. *handlers_cleared is set, before the child runs,
 * to 1 when the kernel resets its handled signals to SIG_DFL itself (CLONE_CLEAR_SIGHAND),
 * else 0. Called with every signal blocked and without the GIL. */
long fdloop_start_child(int (*fn)(void *), void *arg, int share_files, int cgroup_fd,
                        int *pidfd, volatile int *handlers_cleared);

/* "clone3" or "clone": the system call the next fdloop_start_child will use. */
const char *fdloop_variant(void);

/* Once, at import: the probe for clone3 and the key of the per-thread stacks. 0 or -1
 * with a Python exception set. */
int fdloop_clone3_init(void);

/* waitid's answer as reap() gives it: (pid, wait status, user CPU s, system CPU s,
 * max RSS bytes). New reference, or NULL with an exception set. */
PyObject *fdloop_exit_tuple(const siginfo_t *info, const struct rusage *usage);

#define FDLOOP_P_PIDFD 3

/* arm() and collect() (_ready_set.c), added to the module at import. */
extern PyMethodDef fdloop_ready_set_methods[];

#endif
