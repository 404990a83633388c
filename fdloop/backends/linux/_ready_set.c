/* arm() and collect(): the per-loop ready set's two calls into the kernel, compiled.
 *
 * The ready set is one epoll fd per loop, which the loop itself watches; the fds in it
 * are pidfds (and others of ours) registered EPOLLONESHOT, so that an exited child's
 * pidfd, readable for good, is reported once and not on every later wake-up. Each
 * registration carries its fd in the low 32 bits of data.u64 and, in bit 32, whether it
 * is a child of ours to reap: collect() then turns one loop wake-up into one epoll_wait
 * and one waitid per exited child, without a Python call per event.
 */
#include "_clone_spawn.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_BIT ((uint64_t)1 << 32)
#define MAX_EVENTS_ON_STACK 64

PyDoc_STRVAR(arm_doc,
"arm(epfd, fd, is_child) -> None\n"
"\n"
"Watch fd in the epoll set epfd for EPOLLIN, once (EPOLLONESHOT), noting whether it is\n"
"a child's pidfd for collect() to reap. An fd already in the set is re-armed with the\n"
"same (EPOLL_CTL_MOD). OSError otherwise (EBADF, EPERM for a regular file, ...).");

static PyObject *
ready_arm(PyObject *module, PyObject *args)
{
    int epfd, fd, is_child;
    (void)module;
    if (!PyArg_ParseTuple(args, "iip:arm", &epfd, &fd, &is_child))
        return NULL;
    if (fd < 0) {
        PyErr_Format(PyExc_ValueError, "fd must be >= 0, got %d", fd);
        return NULL;
    }
    struct epoll_event event;
    event.events = EPOLLIN | EPOLLONESHOT;
    event.data.u64 = (uint64_t)(uint32_t)fd | (is_child ? CHILD_BIT : 0);
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) == 0)
        Py_RETURN_NONE;
    if (errno == EEXIST && epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event) == 0)
        Py_RETURN_NONE;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* The item collect() reports for one ready child's pidfd: its exit tuple, None while it
 * runs (or when the fd is not a child of ours), or the errno of a failed waitid. */
static PyObject *
reap_ready(int fd)
{
    siginfo_t info;
    struct rusage usage;
    memset(&info, 0, sizeof info);
    memset(&usage, 0, sizeof usage);
    long rc;
    do {
        rc = syscall(SYS_waitid, FDLOOP_P_PIDFD, fd, &info, WEXITED | WNOHANG, &usage);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return PyLong_FromLong(errno);
    if (info.si_pid == 0)
        Py_RETURN_NONE;
    return fdloop_exit_tuple(&info, &usage);
}

PyDoc_STRVAR(collect_doc,
"collect(epfd, maxevents) -> [(fd, item), ...]\n"
"\n"
"Everything epfd has ready now, without waiting (epoll_wait with timeout 0; EINTR gives\n"
"[]), at most maxevents. For an fd armed as a child's pidfd, item is what\n"
"waitid(P_PIDFD, fd, WEXITED | WNOHANG) with rusage found: reap()'s 5-tuple (reaped),\n"
"None (still running), or an int errno (ECHILD: someone else reaped it). For any other\n"
"fd, item is None. Every fd reported is disarmed until arm() is called again.");

static PyObject *
ready_collect(PyObject *module, PyObject *args)
{
    int epfd, maxevents;
    (void)module;
    if (!PyArg_ParseTuple(args, "ii:collect", &epfd, &maxevents))
        return NULL;
    if (maxevents < 1) {
        PyErr_Format(PyExc_ValueError, "maxevents must be >= 1, got %d", maxevents);
        return NULL;
    }
    struct epoll_event on_stack[MAX_EVENTS_ON_STACK], *events = on_stack;
    if (maxevents > MAX_EVENTS_ON_STACK) {
        events = PyMem_Malloc((size_t)maxevents * sizeof *events);
        if (events == NULL)
            return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    int n = epoll_wait(epfd, events, maxevents, 0);
    if (n < 0) {
        if (errno == EINTR)
            result = PyList_New(0);
        else
            PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (int i = 0; i < n; i++) {
        int fd = (int)(uint32_t)events[i].data.u64;
        PyObject *item;
        if (events[i].data.u64 & CHILD_BIT) {
            item = reap_ready(fd);
        } else {
            item = Py_None;
            Py_INCREF(item);
        }
        PyObject *pair = item == NULL ? NULL : Py_BuildValue("(iN)", fd, item);
        if (pair == NULL) {
            /* Out of memory: the statuses reaped so far go with the list. Each pidfd
             * still answers ECHILD, and its waiter then finds the status as it finds
             * that of a child reaped by someone else (PIDFD_INFO_EXIT). */
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, pair);
    }
done:
    if (events != on_stack)
        PyMem_Free(events);
    return result;
}

PyMethodDef fdloop_ready_set_methods[] = {
    {"arm", ready_arm, METH_VARARGS, arm_doc},
    {"collect", ready_collect, METH_VARARGS, collect_doc},
    {NULL, NULL, 0, NULL},
};
