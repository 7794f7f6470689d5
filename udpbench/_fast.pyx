# cython: language_level=3
"""The hot loops of udpbench: a paced sender and a counting receiver.

Only loops live here. Sockets are created, configured and closed in Python; these functions
take an ``int fd`` and plain numbers and return counts. The datagram header mirrors
``udpbench.wire`` byte for byte (a test compares the two).

Every blocking call runs without the GIL. EINTR is retried after checking for signals, so
Ctrl-C stops a blast within a few tens of milliseconds; the sender then returns what it
counted so far, with the pending exception, so the caller can still collect the report.
"""
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, free

from udpbench._system cimport *

cdef extern from "<sys/prctl.h>" nogil:
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)
    enum:
        PR_SET_TIMERSLACK

# Header layout: see udpbench/wire.py
cdef enum:
    HEADER_SIZE = 32
    OFF_MAGIC = 0
    OFF_VERSION = 4
    OFF_KIND = 5
    OFF_FLAGS = 6
    OFF_SESSION = 8
    OFF_SEQ = 16
    OFF_TX_NS = 24
    WIRE_VERSION = 1
    KIND_DATA = 1

cdef uint32_t WIRE_MAGIC = 0x55445042

# Engines: how the sender hands datagrams to the kernel.
cdef enum:
    ENGINE_SEND_ = 0   # one send() per datagram
    ENGINE_MMSG_ = 1   # sendmmsg(): a batch of datagrams per syscall
    ENGINE_GSO_ = 2    # sendmsg() with UDP_SEGMENT: one super-buffer the kernel cuts into datagrams

ENGINE_SEND = ENGINE_SEND_
ENGINE_MMSG = ENGINE_MMSG_
ENGINE_GSO = ENGINE_GSO_
HEADER_BYTES = HEADER_SIZE
MAGIC = WIRE_MAGIC
MAX_BATCH = 64          # datagrams per sendmmsg / GSO segments per send (UDP_MAX_SEGMENTS)
GSO_MAX_BYTES = 65000   # a GSO super-buffer must stay below the 64 KiB IP limit

cdef enum:
    MAX_BATCH_ = 64
    SIGNAL_CHECK_NS = 50000000      # look for Ctrl-C every 50 ms
    SLEEP_SLACK_NS = 60000          # wake this early from nanosleep, then spin to the deadline
    MAX_LAG_NS = 10000000           # behind schedule by more than this: start the schedule anew
    MAX_ERRNO = 256

# Receive side
cdef enum:
    WINDOW_BITS = 65536             # sliding window for duplicate detection: 8 KiB
    WINDOW_WORDS = 1024
    RX_VLEN = 32                    # messages per recvmmsg
    RX_BUFSIZE = 65536              # a UDP_GRO buffer holds up to 64 KiB of coalesced datagrams
    RX_CTRLSIZE = 128
    POLL_MS = 20


cdef inline uint64_t clock_ns(clockid_t clock) noexcept nogil:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline void write_header(unsigned char *p, uint8_t kind, uint16_t flags, uint64_t session,
                              uint64_t seq, uint64_t tx_ns) noexcept nogil:
    cdef uint32_t magic = htobe32(WIRE_MAGIC)
    cdef uint16_t flags_be = htobe16(flags)
    cdef uint64_t session_be = htobe64(session)
    cdef uint64_t seq_be = htobe64(seq)
    cdef uint64_t tx_be = htobe64(tx_ns)
    memcpy(p + OFF_MAGIC, &magic, 4)
    p[OFF_VERSION] = WIRE_VERSION
    p[OFF_KIND] = kind
    memcpy(p + OFF_FLAGS, &flags_be, 2)
    memcpy(p + OFF_SESSION, &session_be, 8)
    memcpy(p + OFF_SEQ, &seq_be, 8)
    memcpy(p + OFF_TX_NS, &tx_be, 8)


cdef inline void stamp(unsigned char *p, uint64_t seq, uint64_t tx_ns) noexcept nogil:
    cdef uint64_t seq_be = htobe64(seq)
    cdef uint64_t tx_be = htobe64(tx_ns)
    memcpy(p + OFF_SEQ, &seq_be, 8)
    memcpy(p + OFF_TX_NS, &tx_be, 8)


cdef inline uint64_t read_u64(const unsigned char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return be64toh(v)


def pack_header(int kind, int flags, uint64_t session, uint64_t seq, uint64_t tx_ns):
    """The 32 header bytes exactly as the send loops write them (for the wire-format test)."""
    cdef unsigned char buf[HEADER_SIZE]
    write_header(buf, <uint8_t>kind, <uint16_t>flags, session, seq, tx_ns)
    return bytes(buf[:HEADER_SIZE])


cdef void wait_until(uint64_t deadline) noexcept nogil:
    """Sleep while the deadline is far, spin the last stretch: sends land on time, not in bursts."""
    cdef uint64_t now = clock_ns(CLOCK_MONOTONIC)
    cdef uint64_t nap
    cdef timespec req
    if deadline > now + 2 * SLEEP_SLACK_NS:
        nap = deadline - now - SLEEP_SLACK_NS
        req.tv_sec = <time_t>(nap // 1000000000ULL)
        req.tv_nsec = <long>(nap % 1000000000ULL)
        nanosleep(&req, NULL)
    while clock_ns(CLOCK_MONOTONIC) < deadline:
        pass


cdef class _SendBuffers:
    """Preallocated datagrams, message headers and control space for one send call."""
    cdef unsigned char *data
    cdef mmsghdr *msgs
    cdef iovec *iovs
    cdef unsigned char *ctrl

    def __cinit__(self, Py_ssize_t size, int count):
        self.data = <unsigned char *>calloc(count, size)
        self.msgs = <mmsghdr *>calloc(count, sizeof(mmsghdr))
        self.iovs = <iovec *>calloc(count, sizeof(iovec))
        self.ctrl = <unsigned char *>calloc(1, 64)
        if not (self.data and self.msgs and self.iovs and self.ctrl):
            raise MemoryError()

    def __dealloc__(self):
        free(self.data)
        free(self.msgs)
        free(self.iovs)
        free(self.ctrl)


def send_datagrams(int fd, int engine, Py_ssize_t size, uint64_t session, uint64_t first_seq=0,
                   double duration=1.0, double rate_pps=0.0, uint64_t max_count=0, int batch=0,
                   int flags=0):
    """Send DATA datagrams of ``size`` bytes on a connected socket ``fd``.

    Stops after ``duration`` seconds or ``max_count`` datagrams, whichever comes first.
    ``rate_pps`` > 0 paces sends to absolute deadlines; 0 sends as fast as the kernel takes
    them. ``batch`` is the most datagrams per syscall (mmsg, gso); 0 picks one.

    Returns a dict: ``sent`` (datagrams the kernel accepted), ``next_seq``, ``errors``
    ({errno: count}), ``elapsed_ns``, ``syscalls``, gap statistics between syscalls in ns
    (``gap_min_ns``, ``gap_max_ns``, ``gap_mean_ns``, ``gap_std_ns``), ``target_gap_ns``,
    ``schedule_resets`` (times the sender fell more than 10 ms behind) and ``interrupt``
    (the exception a signal raised, or None).
    """
    if size < HEADER_SIZE:
        raise ValueError(f"payload size {size} is smaller than the {HEADER_SIZE}-byte header")
    if engine not in (ENGINE_SEND_, ENGINE_MMSG_, ENGINE_GSO_):
        raise ValueError(f"unknown engine {engine}")
    cdef int most = 1
    if engine == ENGINE_MMSG_:
        most = MAX_BATCH_
    elif engine == ENGINE_GSO_:
        most = min(MAX_BATCH_, GSO_MAX_BYTES // size)
        if most < 1:
            most = 1
    if batch > 0:
        most = min(most, batch)
    cdef double interval_ns = 1e9 / rate_pps if rate_pps > 0 else 0.0
    if interval_ns > 0:
        # a batch covers at most 50 us of the schedule, so pacing stays smooth at low rates
        most = max(1, min(most, <int>(rate_pps * 50e-6)))

    cdef _SendBuffers bufs = _SendBuffers(size, most)
    cdef int i
    for i in range(most):
        write_header(bufs.data + i * size, KIND_DATA, <uint16_t>flags, session, first_seq + i, 0)
        bufs.iovs[i].iov_base = bufs.data + i * size
        bufs.iovs[i].iov_len = size
        bufs.msgs[i].msg_hdr.msg_iov = &bufs.iovs[i]
        bufs.msgs[i].msg_hdr.msg_iovlen = 1
    cdef msghdr gso_msg
    cdef iovec gso_iov
    cdef cmsghdr *cm
    cdef uint16_t gso_size = <uint16_t>size
    memset(&gso_msg, 0, sizeof(gso_msg))
    if engine == ENGINE_GSO_:
        gso_msg.msg_iov = &gso_iov
        gso_msg.msg_iovlen = 1
        gso_msg.msg_control = bufs.ctrl
        gso_msg.msg_controllen = CMSG_SPACE(sizeof(uint16_t))
        cm = CMSG_FIRSTHDR(&gso_msg)
        cm.cmsg_level = SOL_UDP
        cm.cmsg_type = UDP_SEGMENT
        cm.cmsg_len = CMSG_LEN(sizeof(uint16_t))
        memcpy(CMSG_DATA(cm), &gso_size, sizeof(uint16_t))

    cdef int64_t errs[MAX_ERRNO]
    memset(errs, 0, sizeof(errs))
    cdef uint64_t sent = 0, scheduled = 0, syscalls = 0, resets = 0
    cdef uint64_t seq = first_seq
    cdef uint64_t t_start = clock_ns(CLOCK_MONOTONIC)
    cdef double origin = <double>t_start
    cdef uint64_t t_end = t_start + <uint64_t>(duration * 1e9) if duration > 0 else <uint64_t>-1
    cdef uint64_t next_check = t_start + SIGNAL_CHECK_NS
    cdef uint64_t now, deadline, tx, last_call = 0, gap, gap_min = <uint64_t>-1, gap_max = 0
    cdef double gap_sum = 0.0, gap_sq = 0.0
    cdef int n, r, err
    cdef ssize_t rs
    cdef object interrupt = None
    cdef bint signalled = 0

    prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # 1 us timer slack: nanosleep wakes when asked
    with nogil:
        while True:
            now = clock_ns(CLOCK_MONOTONIC)
            if now >= t_end:
                break
            if max_count and sent >= max_count:
                break
            if now >= next_check:
                next_check = now + SIGNAL_CHECK_NS
                with gil:
                    try:
                        PyErr_CheckSignals()
                    except BaseException as exc:
                        interrupt = exc
                        signalled = 1
                if signalled:
                    break
            n = most
            if max_count and max_count - sent < <uint64_t>n:
                n = <int>(max_count - sent)
            if interval_ns > 0:
                deadline = <uint64_t>(origin + <double>scheduled * interval_ns)
                if now < deadline:
                    if deadline > t_end:
                        break
                    wait_until(deadline)
                    now = clock_ns(CLOCK_MONOTONIC)
                elif now - deadline > MAX_LAG_NS:
                    # Far behind (the machine stalled us): do not burst to catch up.
                    origin += <double>(now - deadline)
                    resets += 1
            if syscalls:
                gap = now - last_call
                gap_sum += <double>gap
                gap_sq += <double>gap * <double>gap
                if gap < gap_min:
                    gap_min = gap
                if gap > gap_max:
                    gap_max = gap
            last_call = now
            syscalls += 1
            tx = clock_ns(CLOCK_REALTIME)
            if engine == ENGINE_SEND_:
                stamp(bufs.data, seq, tx)
                rs = send(fd, bufs.data, size, 0)
                r = 1 if rs >= 0 else -1
            elif engine == ENGINE_MMSG_:
                for i in range(n):
                    stamp(bufs.data + i * size, seq + i, tx)
                r = sendmmsg(fd, bufs.msgs, n, 0)
            else:
                for i in range(n):
                    stamp(bufs.data + i * size, seq + i, tx)
                gso_iov.iov_base = bufs.data
                gso_iov.iov_len = n * size
                rs = sendmsg(fd, &gso_msg, 0)
                r = n if rs >= 0 else -1
            if r > 0:
                sent += r
                seq += r
                scheduled += r
            else:
                err = errno
                if err == EINTR:
                    next_check = 0
                    continue
                errs[err if err < MAX_ERRNO else 0] += 1
                scheduled += n  # the slot is spent; the same sequence number goes out next time
    cdef uint64_t elapsed = clock_ns(CLOCK_MONOTONIC) - t_start
    cdef double gaps = <double>(syscalls - 1) if syscalls > 1 else 0.0
    cdef double mean = gap_sum / gaps if gaps > 0 else 0.0
    cdef double var = gap_sq / gaps - mean * mean if gaps > 0 else 0.0
    return {
        "sent": sent,
        "next_seq": seq,
        "errors": {e: errs[e] for e in range(MAX_ERRNO) if errs[e]},
        "elapsed_ns": elapsed,
        "syscalls": syscalls,
        "batch": most,
        "gap_min_ns": gap_min if gaps > 0 else 0,
        "gap_max_ns": gap_max,
        "gap_mean_ns": mean,
        "gap_std_ns": var ** 0.5 if var > 0 else 0.0,
        "target_gap_ns": interval_ns * most,
        "schedule_resets": resets,
        "interrupt": interrupt,
    }


cdef class Receiver:
    """Counts the DATA datagrams of one session arriving on a socket.

    Sequence accounting uses a sliding bitmap of the last 65536 sequence numbers, so memory
    stays the same however long the run: ``received`` counts distinct datagrams,
    ``duplicates`` repeats, ``reordered`` those that arrived after a higher sequence number
    (``late`` of them so late they fell out of the window: counted as received, not checked
    for duplication). Jitter is RFC 3550's running estimate over kernel receive timestamps.
    """
    cdef readonly uint64_t session
    cdef uint64_t window[WINDOW_WORDS]
    cdef readonly bint started
    cdef readonly uint64_t highest, received, duplicates, reordered, late, foreign
    cdef readonly uint64_t payload_bytes, gap_events, max_gap, max_reorder, gro_buffers
    cdef readonly int64_t first_rx_ns, last_rx_ns
    cdef readonly int64_t min_transit_ns, max_transit_ns
    cdef double transit_sum
    cdef double jitter
    cdef int64_t last_transit
    cdef bint have_transit
    cdef readonly uint32_t rxq_overflow
    cdef readonly bint saw_overflow_count
    cdef int stop_flag
    cdef unsigned char *bufs
    cdef unsigned char *ctrl
    cdef mmsghdr *msgs
    cdef iovec *iovs

    def __cinit__(self, uint64_t session):
        self.session = session
        self.bufs = <unsigned char *>malloc(RX_VLEN * RX_BUFSIZE)
        self.ctrl = <unsigned char *>calloc(RX_VLEN, RX_CTRLSIZE)
        self.msgs = <mmsghdr *>calloc(RX_VLEN, sizeof(mmsghdr))
        self.iovs = <iovec *>calloc(RX_VLEN, sizeof(iovec))
        if not (self.bufs and self.ctrl and self.msgs and self.iovs):
            raise MemoryError()
        cdef int i
        for i in range(RX_VLEN):
            self.iovs[i].iov_base = self.bufs + i * RX_BUFSIZE
            self.iovs[i].iov_len = RX_BUFSIZE
            self.msgs[i].msg_hdr.msg_iov = &self.iovs[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
        memset(self.window, 0, sizeof(self.window))
        self.min_transit_ns = 0x7FFFFFFFFFFFFFFF
        self.max_transit_ns = -0x7FFFFFFFFFFFFFFF

    def __dealloc__(self):
        free(self.bufs)
        free(self.ctrl)
        free(self.msgs)
        free(self.iovs)

    def request_stop(self):
        """Make ``run`` return within one poll interval (20 ms). Safe from another thread."""
        self.stop_flag = 1

    @property
    def jitter_ms(self):
        return self.jitter / 1e6

    @property
    def mean_transit_ns(self):
        cdef uint64_t n = self.received - self.late
        return self.transit_sum / n if n else 0.0

    def counts(self):
        """A snapshot of the counters as a dict of plain numbers."""
        return {
            "received": self.received,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "late": self.late,
            "foreign": self.foreign,
            "highest_seq": self.highest if self.started else -1,
            "payload_bytes": self.payload_bytes,
            "gap_events": self.gap_events,
            "max_gap": self.max_gap,
            "max_reorder": self.max_reorder,
            "gro_buffers": self.gro_buffers,
            "first_rx_ns": self.first_rx_ns,
            "last_rx_ns": self.last_rx_ns,
            "jitter_ms": self.jitter / 1e6,
            "min_transit_ns": self.min_transit_ns if self.received else 0,
            "max_transit_ns": self.max_transit_ns if self.received else 0,
            "mean_transit_ns": self.mean_transit_ns,
            "rxq_overflow": self.rxq_overflow if self.saw_overflow_count else None,
        }

    cdef inline void clear_bit(self, uint64_t s) noexcept nogil:
        self.window[(s >> 6) & (WINDOW_WORDS - 1)] &= ~(1ULL << (s & 63))

    cdef inline void advance(self, uint64_t seq) noexcept nogil:
        """Slide the window so that ``seq`` is the highest sequence number seen."""
        cdef uint64_t s = self.highest + 1
        if seq - self.highest >= WINDOW_BITS:
            memset(self.window, 0, sizeof(self.window))
        else:
            while s < seq:
                if (s & 63) == 0 and seq - s >= 64:
                    self.window[(s >> 6) & (WINDOW_WORDS - 1)] = 0
                    s += 64
                else:
                    self.clear_bit(s)
                    s += 1
        self.highest = seq

    cdef void on_datagram(self, const unsigned char *p, size_t n, int64_t rx_ns) noexcept nogil:
        cdef uint32_t magic
        cdef uint64_t seq, gap, behind, word_bit
        cdef int64_t transit, d
        cdef uint64_t *word
        if n < HEADER_SIZE:
            self.foreign += 1
            return
        memcpy(&magic, p + OFF_MAGIC, 4)
        if (be32toh(magic) != WIRE_MAGIC or p[OFF_VERSION] != WIRE_VERSION
                or p[OFF_KIND] != KIND_DATA or read_u64(p + OFF_SESSION) != self.session):
            self.foreign += 1
            return
        seq = read_u64(p + OFF_SEQ)
        if not self.started:
            self.started = 1
            self.highest = seq
            self.first_rx_ns = rx_ns
        elif seq > self.highest:
            gap = seq - self.highest - 1
            if gap:
                self.gap_events += 1
                if gap > self.max_gap:
                    self.max_gap = gap
            self.advance(seq)
        else:
            behind = self.highest - seq
            if behind >= WINDOW_BITS:
                self.late += 1
                self.reordered += 1
                self.received += 1
                self.payload_bytes += n
                self.last_rx_ns = rx_ns
                return
            word = &self.window[(seq >> 6) & (WINDOW_WORDS - 1)]
            word_bit = 1ULL << (seq & 63)
            if word[0] & word_bit:
                self.duplicates += 1
                return
            self.reordered += 1
            if behind > self.max_reorder:
                self.max_reorder = behind
        self.window[(seq >> 6) & (WINDOW_WORDS - 1)] |= 1ULL << (seq & 63)
        self.received += 1
        self.payload_bytes += n
        self.last_rx_ns = rx_ns
        # RFC 3550 interarrival jitter: J += (|D(i-1,i)| - J) / 16, in arrival order
        transit = rx_ns - <int64_t>read_u64(p + OFF_TX_NS)
        self.transit_sum += <double>transit
        if transit < self.min_transit_ns:
            self.min_transit_ns = transit
        if transit > self.max_transit_ns:
            self.max_transit_ns = transit
        if self.have_transit:
            d = transit - self.last_transit
            if d < 0:
                d = -d
            self.jitter += (<double>d - self.jitter) / 16.0
        self.last_transit = transit
        self.have_transit = 1

    def feed(self, const unsigned char[:] payload, int64_t rx_ns):
        """Count one datagram given as bytes (for tests and for Python-side receive paths)."""
        if payload.shape[0] == 0:  # a zero-length datagram is legal UDP, and foreign here
            self.foreign += 1
            return
        with nogil:
            self.on_datagram(&payload[0], payload.shape[0], rx_ns)

    def run(self, int fd, double idle_timeout=0.0):
        """Receive and count until ``request_stop`` is called, or, with ``idle_timeout`` > 0,
        until nothing has arrived for that many seconds. Returns the number of datagrams
        (valid or not) taken off the socket by this call."""
        cdef pollfd pfd
        cdef int r, i, err, got
        cdef unsigned int length, seg, off, piece
        cdef int gso
        cdef uint64_t taken = 0
        cdef int64_t rx_ns, batch_ns
        cdef uint64_t idle_ns = <uint64_t>(idle_timeout * 1e9)
        cdef uint64_t last_data = clock_ns(CLOCK_MONOTONIC)
        cdef uint64_t next_check = last_data + SIGNAL_CHECK_NS, now
        cdef cmsghdr *cm
        cdef timespec ts
        cdef uint32_t ovfl
        cdef object failure = None
        cdef bint failed = 0
        err = 0
        pfd.fd = fd
        pfd.events = POLLIN
        self.stop_flag = 0
        with nogil:
            while not self.stop_flag:
                now = clock_ns(CLOCK_MONOTONIC)
                if idle_ns and now - last_data > idle_ns:
                    break
                if now >= next_check:
                    next_check = now + SIGNAL_CHECK_NS
                    with gil:
                        try:
                            PyErr_CheckSignals()
                        except BaseException as exc:
                            failure = exc
                            failed = 1
                    if failed:
                        break
                r = poll(&pfd, 1, POLL_MS)
                if r <= 0:
                    if r < 0 and errno != EINTR:
                        err = errno
                        failed = 1
                        break
                    continue
                for i in range(RX_VLEN):
                    self.msgs[i].msg_hdr.msg_control = self.ctrl + i * RX_CTRLSIZE
                    self.msgs[i].msg_hdr.msg_controllen = RX_CTRLSIZE
                    self.msgs[i].msg_hdr.msg_flags = 0
                got = recvmmsg(fd, self.msgs, RX_VLEN, MSG_DONTWAIT, NULL)
                if got < 0:
                    err = errno
                    if err == EINTR or err == EAGAIN or err == ECONNREFUSED:  # EWOULDBLOCK == EAGAIN on Linux
                        continue
                    failed = 1
                    break
                batch_ns = <int64_t>clock_ns(CLOCK_REALTIME)
                last_data = clock_ns(CLOCK_MONOTONIC)
                for i in range(got):
                    length = self.msgs[i].msg_len
                    gso = 0
                    rx_ns = batch_ns
                    cm = CMSG_FIRSTHDR(&self.msgs[i].msg_hdr)
                    while cm != NULL:
                        if cm.cmsg_level == SOL_UDP and cm.cmsg_type == UDP_GRO:
                            memcpy(&gso, CMSG_DATA(cm), sizeof(int))
                        elif cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == SO_RXQ_OVFL:
                            memcpy(&ovfl, CMSG_DATA(cm), sizeof(uint32_t))
                            self.rxq_overflow = ovfl
                            self.saw_overflow_count = 1
                        elif cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == UDPB_SCM_TIMESTAMPNS:
                            memcpy(&ts, CMSG_DATA(cm), sizeof(timespec))
                            rx_ns = <int64_t>ts.tv_sec * 1000000000LL + ts.tv_nsec
                        cm = CMSG_NXTHDR(&self.msgs[i].msg_hdr, cm)
                    if gso > 0 and <unsigned int>gso < length:
                        # UDP_GRO coalesced several datagrams into one buffer: split them
                        self.gro_buffers += 1
                        seg = <unsigned int>gso
                    else:
                        seg = length
                    off = 0
                    while off < length or (length == 0 and off == 0):
                        piece = seg if length - off > seg else length - off
                        self.on_datagram(self.bufs + i * RX_BUFSIZE + off, piece, rx_ns)
                        taken += 1
                        if seg == 0:
                            break
                        off += seg
        if failed:
            if failure is not None:
                raise failure
            raise OSError(err, strerror(err).decode())
        return taken
