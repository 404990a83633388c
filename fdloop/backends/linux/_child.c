/* What the child of _clone_spawn.spawn() does before execve, on its own stack, sharing
 * our memory while the parent thread is suspended (CLONE_VM | CLONE_VFORK).
 *
 * The child only makes async-signal-safe calls. Credentials are changed with raw system
 * calls: glibc's setuid()/setgid()/setgroups() would broadcast the change to every thread
 * of the *parent* (their list lives in the memory the child shares), which is why CPython
 * refuses vfork for user=/group=/extra_groups= and why we go straight to the kernel.
 *
 * The remaining fds are marked close-on-exec with close_range(CLOSE_RANGE_CLOEXEC)
 * (Linux 5.11) instead of being closed one by one: the kernel closes them during execve,
 * after the suspended parent has been released, so the parent's wait does not grow with
 * the number of fds it has open.
 */
#include "_clone_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static int
mark_cloexec_above(int low)
{
    if (syscall(SYS_close_range, (unsigned)low, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return 0;
    /* A kernel before 5.11: mark each fd below the soft limit. */
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return -1;
    for (rlim_t fd = (rlim_t)low; fd < limit.rlim_cur; fd++) {
        int flags = fcntl((int)fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC))
            fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
    }
    return 0;
}

int
fdloop_child_main(void *arg)
{
    struct request *r = arg;
    int step = STEP_NONE;

    /* Started with CLONE_FILES, we still share the parent's fd table: take a private one
     * before touching any fd. CLOSE_RANGE_UNSHARE without CLOSE_RANGE_CLOEXEC copies
     * only the fds below keep_below (Linux 5.9), so this costs the same with 10 fds
     * open or 10,000. An older kernel copies them all, as a clone without CLONE_FILES
     * would have. */
    if (r->keep_below > 0
        && syscall(SYS_close_range, (unsigned)r->keep_below, ~0U, CLOSE_RANGE_UNSHARE) != 0
        && unshare(CLONE_FILES) != 0) {
        step = STEP_UNSHARE_FDS;
        goto fail;
    }

    for (int signo = 1; signo < NSIG; signo++) {
        struct sigaction old, dfl;
        if (signo == SIGKILL || signo == SIGSTOP)
            continue;
        if (r->handlers_cleared) {
            /* Handlers are SIG_DFL already; only ignored signals may be left to reset. */
            if (!sigismember(&r->sigdefault, signo))
                continue;
        } else {
            if (sigaction(signo, NULL, &old) != 0)  /* glibc's own signals say EINVAL */
                continue;
            if (old.sa_handler == SIG_DFL)
                continue;
            if (old.sa_handler == SIG_IGN && !sigismember(&r->sigdefault, signo))
                continue;
        }
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(signo, &dfl, NULL);
    }
    if (r->setsid && setsid() < 0) {
        step = STEP_SETSID;
        goto fail;
    }
    if (r->pgid >= 0 && setpgid(0, r->pgid) < 0) {
        step = STEP_SETPGID;
        goto fail;
    }
    if (r->umask >= 0)
        umask((mode_t)r->umask);
    step = STEP_STDIO;
    for (int target = 0; target < 3; target++) {
        int source = r->stdio[target];
        if (source < 0)
            continue;
        if (source == target) {  /* dup2 would leave FD_CLOEXEC set */
            if (fcntl(source, F_SETFD, 0) < 0)
                goto fail;
        } else if (dup2(source, target) < 0) {
            goto fail;
        }
    }
    if (r->cwd != NULL && chdir(r->cwd) < 0) {
        step = STEP_CWD;
        goto fail;
    }
    if (r->n_groups >= 0 && syscall(SYS_setgroups, (size_t)r->n_groups, r->groups) < 0) {
        step = STEP_GROUPS;
        goto fail;
    }
    if (r->set_gid && syscall(SYS_setresgid, r->gid, r->gid, r->gid) < 0) {
        step = STEP_GID;
        goto fail;
    }
    if (r->set_uid && syscall(SYS_setresuid, r->uid, r->uid, r->uid) < 0) {
        step = STEP_UID;
        goto fail;
    }
    step = STEP_PASS_FDS;
    for (Py_ssize_t i = 0; i < r->n_pass; i++) {
        if (r->pass_sources[i] != r->pass_fds[i] && dup2(r->pass_sources[i], r->pass_fds[i]) < 0)
            goto fail;
    }
    if (r->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, r->pdeathsig) < 0) {
            step = STEP_PDEATHSIG;
            goto fail;
        }
        /* Armed after the credentials change, which would clear it. The parent may
         * have died before the prctl, and the signal will then never come: we were
         * already reparented. */
        if (getppid() != r->parent)
            _exit(125);
    }
    if (r->close_fds && mark_cloexec_above(3) < 0) {
        step = STEP_CLOSE_FDS;
        goto fail;
    }
    step = STEP_PASS_FDS;
    for (Py_ssize_t i = 0; i < r->n_pass; i++) {
        if (fcntl(r->pass_fds[i], F_SETFD, 0) < 0)
            goto fail;
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    step = STEP_EXEC;
    execve(r->path, r->argv, r->envp);
fail:
    r->error = errno ? errno : EINVAL;
    r->step = step;
    _exit(127);
}
