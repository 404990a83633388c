/* How _clone_spawn starts its child: the raw clone3 system call where we can, clone(2)
 * where we cannot.
 *
 * clone3 (Linux 5.3) takes its arguments in a struct: the pidfd gets a field of its own
 * (clone(2) returns it through the parent_tid slot), the stack is given as its lowest
 * address and its size (the kernel computes the top), and CLONE_INTO_CGROUP (5.7) can
 * start the child directly in a cgroup v2 directory, with no write to cgroup.procs and
 * no moment in which it runs in ours. glibc has no clone3 wrapper for callers, so we make
 * the system call ourselves, and with CLONE_VM the child comes back from it on the new
 * stack sharing our memory: the compiler's frame of the function that made the call is
 * not valid there (its locals lie on the parent's stack, which the parent still owns). So
 * the call is made from a few instructions of inline assembly which, in the child, call
 * fn(arg) at once and end the child through the exit system call with fn's value, never
 * coming back into C code that expects the old frame. fn's own frame is on the child's
 * stack; it reaches the request through arg, in memory the suspended parent keeps alive.
 *
 * clone3 is refused with ENOSYS by kernels before 5.3 and by seccomp profiles written
 * before it existed (some say EPERM instead), and we have the assembly only for x86_64
 * and aarch64. Then clone(2) does the same job. The choice is probed once, at import, and
 * corrected for good the first time a real spawn hears ENOSYS or EPERM.
 *
 * The child's stack is kept, one per thread, from the thread's first spawn until it
 * exits (a pthread key whose destructor unmaps it), instead of an mmap and munmap per
 * spawn: the munmap of pages the child has touched costs the parent a TLB shootdown on
 * every CPU that ran our threads, and the child then pays its page faults again. Per
 * thread, because a thread is suspended only while its own child runs, so two threads
 * spawning at once need two stacks, and a lock would serialise spawns for nothing. By the
 * time the call returns the child has exec'd (another address space) or exited, so the
 * next spawn of the thread can use the same stack. A fork()ed child keeps the forking
 * thread's stack (its copy of the mapping, still valid) and loses the other threads',
 * as it loses every other per-thread buffer of theirs.
 */
#include "_clone_spawn.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#define FDLOOP_CLONE_INTO_CGROUP 0x200000000ULL
#define FDLOOP_CLONE_CLEAR_SIGHAND 0x100000000ULL
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

#define CHILD_STACK_SIZE (256 * 1024)
#define GUARD_SIZE 4096  /* below the stack, never mapped readable: an overflow faults */

#if defined(__x86_64__) || defined(__aarch64__)
#define HAVE_CLONE3_ENTRY 1
#else
#define HAVE_CLONE3_ENTRY 0
#endif

/* include/uapi/linux/sched.h, up to and including `cgroup` (CLONE_ARGS_SIZE_VER2 = 88). */
struct clone3_args {
    uint64_t flags;
    uint64_t pidfd;       /* where the kernel writes the pidfd (CLONE_PIDFD) */
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;       /* lowest address of the child's stack */
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;      /* an fd of a cgroup v2 directory (CLONE_INTO_CGROUP) */
};

static pthread_key_t stack_key;  /* this thread's child stack (its guard page's address) */

static void
free_stack(void *base)
{
    munmap(base, GUARD_SIZE + CHILD_STACK_SIZE);
}

/* 1: clone3; 0: clone. Written once at import and at most once more, by whichever thread
 * first sees clone3 refused; a stale read only costs that thread one more refusal. */
static int use_clone3 = 0;
/* 1 until clone3 refuses CLONE_CLEAR_SIGHAND (Linux 5.3 and 5.4 know clone3, not it). */
static int clear_sighand = 1;

#if HAVE_CLONE3_ENTRY
/* clone3(args) in the parent: the child's pid, or -errno. In the child: fn(arg), then
 * exit with its value, on the stack clone3 gave it. */
static long
clone3_entry(struct clone3_args *args, int (*fn)(void *), void *arg)
{
#if defined(__x86_64__)
    /* syscall clobbers only rax (the result), rcx and r11: fn and arg stay in rdx and
     * r8 for the child to use. */
    register long rax __asm__("rax") = SYS_clone3;
    register struct clone3_args *rdi __asm__("rdi") = args;
    register unsigned long rsi __asm__("rsi") = sizeof *args;
    register int (*rdx)(void *) __asm__("rdx") = fn;
    register void *r8 __asm__("r8") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "testq %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        /* The child: no caller frame to unwind to, the psABI's 16-byte alignment at the
         * call, then exit(fn(arg)). */
        "xorl %%ebp, %%ebp\n\t"
        "andq $-16, %%rsp\n\t"
        "movq %%r8, %%rdi\n\t"
        "callq *%%rdx\n\t"
        "movl %%eax, %%edi\n\t"
        "movl %[exit_nr], %%eax\n\t"
        "syscall\n\t"
        "hlt\n"
        "1:\n\t"
        : "+r"(rax)
        : "r"(rdi), "r"(rsi), "r"(rdx), "r"(r8), [exit_nr] "i"(SYS_exit)
        : "rcx", "r11", "memory", "cc");
    return rax;
#else /* __aarch64__ */
    /* svc preserves every register but x0 (the result): fn and arg stay in x2 and x3.
     * The kernel hands the child sp = stack + stack_size, 16-byte aligned because our
     * stack's base and size are page multiples. */
    register long x0 __asm__("x0") = (long)args;
    register unsigned long x1 __asm__("x1") = sizeof *args;
    register int (*x2)(void *) __asm__("x2") = fn;
    register void *x3 __asm__("x3") = arg;
    register long x8 __asm__("x8") = SYS_clone3;
    __asm__ volatile(
        "svc #0\n\t"
        "cbnz x0, 1f\n\t"
        "mov x29, xzr\n\t"
        "mov x30, xzr\n\t"
        "mov x0, x3\n\t"
        "blr x2\n\t"
        "mov x8, %[exit_nr]\n\t"
        "svc #0\n\t"
        "brk #0\n"
        "1:\n\t"
        : "+r"(x0)
        : "r"(x1), "r"(x2), "r"(x3), "r"(x8), [exit_nr] "i"(SYS_exit)
        : "memory", "cc");
    return x0;
#endif
}
#endif /* HAVE_CLONE3_ENTRY */

int
fdloop_clone3_init(void)
{
    int err = pthread_key_create(&stack_key, free_stack);
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
#if HAVE_CLONE3_ENTRY
    /* A size below the first version's is refused with EINVAL before anything else is
     * looked at, and nothing is created; ENOSYS or EPERM here is a kernel or a seccomp
     * filter that will not let clone3 through whatever we pass. */
    errno = 0;
    long rc = syscall(SYS_clone3, NULL, (size_t)0);
    use_clone3 = rc < 0 && errno == EINVAL;
#endif
    return 0;
}

const char *
fdloop_variant(void)
{
    return __atomic_load_n(&use_clone3, __ATOMIC_RELAXED) ? "clone3" : "clone";
}

/* The lowest usable address of this thread's child stack (made on first use), or NULL
 * with errno set. */
static char *
thread_stack(void)
{
    char *base = pthread_getspecific(stack_key);
    if (base == NULL) {
        base = mmap(NULL, GUARD_SIZE + CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (base == MAP_FAILED)
            return NULL;
        int err = mprotect(base, GUARD_SIZE, PROT_NONE) != 0 ? errno : 0;
        if (err == 0)
            err = pthread_setspecific(stack_key, base);
        if (err != 0) {
            free_stack(base);
            errno = err;
            return NULL;
        }
    }
    return base + GUARD_SIZE;
}

long
fdloop_start_child(int (*fn)(void *), void *arg, int share_files, int cgroup_fd, int *pidfd,
                   volatile int *handlers_cleared)
{
    char *stack = thread_stack();
    if (stack == NULL)
        return -errno;
    long rc = -ENOSYS;
    uint64_t flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | (share_files ? CLONE_FILES : 0);
#if HAVE_CLONE3_ENTRY
    if (__atomic_load_n(&use_clone3, __ATOMIC_RELAXED)) {
        struct clone3_args args;
        memset(&args, 0, sizeof args);
        args.flags = flags | (cgroup_fd >= 0 ? FDLOOP_CLONE_INTO_CGROUP : 0);
        args.pidfd = (uint64_t)(uintptr_t)pidfd;
        args.exit_signal = SIGCHLD;
        args.stack = (uint64_t)(uintptr_t)stack;
        args.stack_size = CHILD_STACK_SIZE;
        args.cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0;
        /* The kernel resets the child's handled signals to SIG_DFL as it copies them,
         * which saves the child a sigaction per signal while we wait for it. */
        *handlers_cleared = __atomic_load_n(&clear_sighand, __ATOMIC_RELAXED);
        if (*handlers_cleared)
            args.flags |= FDLOOP_CLONE_CLEAR_SIGHAND;
        rc = clone3_entry(&args, fn, arg);
        if (rc == -EINVAL && *handlers_cleared) {
            __atomic_store_n(&clear_sighand, 0, __ATOMIC_RELAXED);
            *handlers_cleared = 0;
            args.flags &= ~FDLOOP_CLONE_CLEAR_SIGHAND;
            rc = clone3_entry(&args, fn, arg);
        }
        /* Refused as a whole (an old kernel, seccomp): from now on clone(2). A refusal
         * for the cgroup is the caller's to hear, not a reason to drop clone3. */
        if (!((rc == -ENOSYS || rc == -EPERM) && cgroup_fd < 0))
            return rc;
        __atomic_store_n(&use_clone3, 0, __ATOMIC_RELAXED);
    }
#endif
    if (cgroup_fd >= 0)
        return -ENOSYS;
    *handlers_cleared = 0;
    /* clone(2) returns the pidfd through the parent_tid argument. */
    rc = clone(fn, stack + CHILD_STACK_SIZE, (int)flags | SIGCHLD, arg, pidfd);
    return rc < 0 ? -errno : rc;
}
