# C declarations for the hot loops in _fast.pyx, grouped by the header they come from.
# Logic lives in _fast.pyx; this file only says what the C library offers.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EINTR
        EAGAIN
        EWOULDBLOCK
        ENOBUFS
        EMSGSIZE
        ECONNREFUSED
        EINVAL
        EIO
        ENOPROTOOPT
        EOPNOTSUPP


cdef extern from "<string.h>" nogil:
    void *memcpy(void *dest, const void *src, size_t n)
    void *memset(void *s, int c, size_t n)
    char *strerror(int errnum)


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    ctypedef int clockid_t
    enum:
        CLOCK_REALTIME
        CLOCK_MONOTONIC
    int clock_gettime(clockid_t clk_id, timespec *tp)
    int nanosleep(const timespec *req, timespec *rem)
    int clock_nanosleep(clockid_t clockid, int flags, const timespec *request, timespec *remain)
    enum:
        TIMER_ABSTIME


cdef extern from "<sys/prctl.h>" nogil:
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)
    enum:
        PR_SET_TIMERSLACK
        PR_GET_TIMERSLACK


# Compiler builtins (GCC and Clang): count leading zeros, for the log-linear histogram.
cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil


cdef extern from "<endian.h>" nogil:
    uint64_t htobe64(uint64_t x)
    uint64_t be64toh(uint64_t x)
    uint32_t htobe32(uint32_t x)
    uint32_t be32toh(uint32_t x)
    uint16_t htobe16(uint16_t x)
    uint16_t be16toh(uint16_t x)


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    ctypedef unsigned long nfds_t
    enum:
        POLLIN
        POLLERR
    int poll(pollfd *fds, nfds_t nfds, int timeout)


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    enum:
        SOL_SOCKET
        MSG_DONTWAIT
        MSG_TRUNC
    cmsghdr *CMSG_FIRSTHDR(msghdr *msgh)
    cmsghdr *CMSG_NXTHDR(msghdr *msgh, cmsghdr *cmsg)
    unsigned char *CMSG_DATA(cmsghdr *cmsg)
    size_t CMSG_SPACE(size_t length)
    size_t CMSG_LEN(size_t length)
    ssize_t send(int sockfd, const void *buf, size_t len, int flags)
    ssize_t sendmsg(int sockfd, const msghdr *msg, int flags)
    int sendmmsg(int sockfd, mmsghdr *msgvec, unsigned int vlen, int flags)
    int recvmmsg(int sockfd, mmsghdr *msgvec, unsigned int vlen, int flags, timespec *timeout)


# Linux constants glibc may not name; defined here once with the kernel's values.
cdef extern from *:
    """
    #include <netinet/in.h>
    #include <netinet/udp.h>
    #ifndef SOL_UDP
    #define SOL_UDP 17
    #endif
    #ifndef UDP_SEGMENT
    #define UDP_SEGMENT 103
    #endif
    #ifndef UDP_GRO
    #define UDP_GRO 104
    #endif
    #ifndef SO_RXQ_OVFL
    #define SO_RXQ_OVFL 40
    #endif
    #ifndef SO_TIMESTAMPNS
    #define SO_TIMESTAMPNS 35
    #endif
    #define UDPB_SCM_TIMESTAMPNS SO_TIMESTAMPNS
    """
    enum:
        SOL_UDP
        UDP_SEGMENT
        UDP_GRO
        SO_RXQ_OVFL
        UDPB_SCM_TIMESTAMPNS
