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

from udpbench.engine._system cimport *

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
    OFF_SCHED_NS = 32               # DATA body: the scheduled send time, when FLAG_SCHEDULED
    SCHED_MIN_SIZE = 40             # payloads this large carry it
    FLAG_SCHEDULED = 2
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
MAX_BATCH = 64          # datagrams per sendmmsg
MAX_GSO_SEGMENTS = 128  # segments per GSO send where the kernel allows it (6.x); else 64
GSO_MAX_BYTES = 65000   # a GSO super-buffer must stay below the 64 KiB IP limit
PACING_BATCH_NS = 50000  # at a paced rate, one syscall covers at most this much of the schedule
CATCHUP = 2             # behind schedule, the sender catches up at most this many times the rate

cdef enum:
    MAX_BATCH_ = 64
    MAX_GSO_SEGMENTS_ = 128
    OLD_GSO_SEGMENTS_ = 64          # UDP_MAX_SEGMENTS before Linux 6.x
    GSO_MAX_BYTES_ = 65000
    PACING_BATCH_NS_ = 50000
    CATCHUP_ = 2
    SIGNAL_CHECK_NS = 50000000      # look for Ctrl-C (or a stop request) every 50 ms
    MIN_MARGIN_NS = 20000           # wake at least this early from a sleep, then spin to the deadline
    MAX_MARGIN_NS = 250000
    MAX_LAG_NS = 1000000000         # behind schedule by more than this (a suspended process): give it up
    MAX_ERRNO = 256

# Receive side
cdef enum:
    WINDOW_BITS = 65536             # sliding window for duplicate detection: 8 KiB
    WINDOW_WORDS = 1024
    RX_VLEN = 64                    # messages per recvmmsg
    RX_BUFSIZE = 65536              # a UDP_GRO buffer holds up to 64 KiB of coalesced datagrams
    RX_CTRLSIZE = 128
    POLL_MS = 20
    RX_NAP_NS = 50000               # busy: sleep this long between empty reads instead of poll()
    RX_NAP_SLACK_NS = 50000         # ... give or take this (the kernel's default timer slack)
    RX_BUSY_WINDOW_NS = 2000000     # judge "busy" over this interval
    RX_BUSY_MIN = 40                # ... by at least this many datagrams in it (20k/s)

# Log-linear histogram: exact below 32, then 32 buckets per power of two (3 % resolution),
# up to 2^43 ns (about 2.4 hours). 1248 counters: 10 KiB whatever the run length.
cdef enum:
    HIST_SUB_BITS = 5
    HIST_SUB = 32
    HIST_BINS = 1248


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


cdef inline void stamp(unsigned char *p, uint64_t seq, uint64_t tx_ns, bint has_sched,
                       uint64_t sched_ns) noexcept nogil:
    cdef uint64_t seq_be = htobe64(seq)
    cdef uint64_t tx_be = htobe64(tx_ns)
    cdef uint64_t sched_be
    memcpy(p + OFF_SEQ, &seq_be, 8)
    memcpy(p + OFF_TX_NS, &tx_be, 8)
    if has_sched:
        sched_be = htobe64(sched_ns)
        memcpy(p + OFF_SCHED_NS, &sched_be, 8)


cdef inline uint64_t read_u64(const unsigned char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return be64toh(v)


def pack_header(int kind, int flags, uint64_t session, uint64_t seq, uint64_t tx_ns):
    """The 32 header bytes exactly as the send loops write them (for the wire-format test)."""
    cdef unsigned char buf[HEADER_SIZE]
    write_header(buf, <uint8_t>kind, <uint16_t>flags, session, seq, tx_ns)
    return bytes(buf[:HEADER_SIZE])


cdef inline int hist_index(uint64_t v) noexcept nogil:
    cdef int e, i
    if v < HIST_SUB:
        return <int>v
    e = 63 - __builtin_clzll(v)
    i = (e - HIST_SUB_BITS + 1) * HIST_SUB + <int>((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1))
    return i if i < HIST_BINS else HIST_BINS - 1


cdef inline uint64_t hist_lower(int i) noexcept nogil:
    if i < HIST_SUB:
        return <uint64_t>i
    cdef int e = i // HIST_SUB + HIST_SUB_BITS - 1
    return (<uint64_t>(HIST_SUB + i % HIST_SUB)) << (e - HIST_SUB_BITS)


cdef struct Hist:
    uint64_t bins[HIST_BINS]
    uint64_t count
    uint64_t max_value


cdef inline void hist_add(Hist *h, uint64_t v) noexcept nogil:
    h.bins[hist_index(v)] += 1
    h.count += 1
    if v > h.max_value:
        h.max_value = v


cdef uint64_t hist_at_rank(const Hist *h, uint64_t rank) noexcept nogil:
    """The ``rank``-th smallest value (1-based): its bucket's midpoint, capped by the maximum."""
    cdef uint64_t seen = 0, lower, upper
    cdef int i
    if h.count == 0:
        return 0
    if rank < 1:
        rank = 1
    for i in range(HIST_BINS):
        seen += h.bins[i]
        if seen >= rank:
            lower = hist_lower(i)
            upper = hist_lower(i + 1) if i + 1 < HIST_BINS else lower
            if upper > h.max_value + 1:
                upper = h.max_value + 1
            return lower + (upper - lower) // 2 if upper > lower + 1 else lower
    return h.max_value


cdef inline uint64_t rank_of(double q, uint64_t count) noexcept nogil:
    cdef uint64_t want = <uint64_t>(q * count + 0.5)
    return want if want >= 1 else 1


cdef inline double bucket_middle(int i) noexcept nogil:
    """A bucket's representative value: exact below 32, else its midpoint."""
    if i < HIST_SUB:
        return <double>i
    return (<double>hist_lower(i) + <double>hist_lower(i + 1) - 1.0) / 2.0


cdef class Histogram:
    """Counts of durations in ns in fixed log-linear buckets: percentiles within 3 %, memory flat.

    The send loop keeps two (gaps between syscalls, lateness against the schedule); Python can
    feed one too, which is how the tests check the bucket arithmetic.
    """
    cdef Hist h

    def __cinit__(self):
        memset(&self.h, 0, sizeof(Hist))

    @property
    def count(self):
        return self.h.count

    @property
    def max_value(self):
        return self.h.max_value

    cdef inline void add(self, uint64_t v) noexcept nogil:
        hist_add(&self.h, v)

    def record(self, uint64_t value):
        hist_add(&self.h, value)

    def percentile(self, double q):
        """The value below which a fraction ``q`` of the counts lie (bucket midpoint); 0 if empty."""
        if self.h.count == 0:
            return 0
        if not 0.0 <= q <= 1.0:
            raise ValueError("q is a fraction between 0 and 1")
        return hist_at_rank(&self.h, rank_of(q, self.h.count))

    def summary(self, prefix):
        """{prefix_p1_ns, _p50_ns, _p99_ns, _p999_ns, _max_ns}: what the row reports."""
        return {
            f"{prefix}_p1_ns": self.percentile(0.01),
            f"{prefix}_p50_ns": self.percentile(0.50),
            f"{prefix}_p99_ns": self.percentile(0.99),
            f"{prefix}_p999_ns": self.percentile(0.999),
            f"{prefix}_max_ns": self.h.max_value,
        }


cdef struct SignedHist:
    # Delays between two hosts' clocks can be negative before the offset is known: magnitudes
    # of negative values go into their own histogram, so resolution stays 3 % either side of 0.
    Hist pos
    Hist neg
    int64_t min_value
    int64_t max_value


cdef inline void signed_add(SignedHist *h, int64_t v) noexcept nogil:
    if h.pos.count + h.neg.count == 0:
        h.min_value = v
        h.max_value = v
    elif v < h.min_value:
        h.min_value = v
    elif v > h.max_value:
        h.max_value = v
    if v >= 0:
        hist_add(&h.pos, <uint64_t>v)
    else:
        hist_add(&h.neg, <uint64_t>(-v))


cdef int64_t signed_percentile(const SignedHist *h, double q) noexcept nogil:
    cdef uint64_t n = h.pos.count + h.neg.count
    if n == 0:
        return 0
    cdef uint64_t rank = rank_of(q, n)
    if rank > n:
        rank = n
    cdef int64_t v
    if rank == n:
        return h.max_value
    if rank == 1:
        return h.min_value
    if rank <= h.neg.count:  # ascending order starts at the largest negative magnitude
        v = -<int64_t>hist_at_rank(&h.neg, h.neg.count - rank + 1)
    else:
        v = <int64_t>hist_at_rank(&h.pos, rank - h.neg.count)
    # A bucket's midpoint can lie outside what was seen; the extremes are exact.
    return h.min_value if v < h.min_value else (h.max_value if v > h.max_value else v)


cdef dict signed_summary(const SignedHist *h, str prefix):
    cdef uint64_t n = h.pos.count + h.neg.count
    return {
        f"{prefix}_samples": n,
        f"{prefix}_min_ns": h.min_value if n else 0,
        f"{prefix}_p50_ns": signed_percentile(h, 0.50),
        f"{prefix}_p90_ns": signed_percentile(h, 0.90),
        f"{prefix}_p99_ns": signed_percentile(h, 0.99),
        f"{prefix}_p999_ns": signed_percentile(h, 0.999),
        f"{prefix}_max_ns": h.max_value if n else 0,
    }


cdef class DelayHistogram:
    """Signed delays in ns (Python-fed): the receiver's one-way-delay histogram, for tests."""
    cdef SignedHist h

    def __cinit__(self):
        memset(&self.h, 0, sizeof(SignedHist))

    def record(self, int64_t value):
        signed_add(&self.h, value)

    def percentile(self, double q):
        if not 0.0 <= q <= 1.0:
            raise ValueError("q is a fraction between 0 and 1")
        return signed_percentile(&self.h, q)

    def summary(self, prefix):
        return signed_summary(&self.h, prefix)


cdef class StopFlag:
    """Asks send loops (and receivers) running in other threads to return soon, without the GIL.

    Python delivers signals to the main thread only, so threads that send parallel streams
    watch one of these instead; the main thread sets it on Ctrl-C.
    """
    cdef int flag

    def set(self):
        self.flag = 1

    def is_set(self):
        return self.flag != 0


cdef struct Pacer:
    uint64_t margin     # wake this long before a deadline and spin the rest
    double latency      # running mean of how late sleeps wake (ns)
    uint64_t sleeps
    uint64_t overslept  # sleeps that woke past the deadline itself


cdef void wait_until(Pacer *pacer, uint64_t deadline) noexcept nogil:
    """Sleep while the deadline is far, spin the last stretch: sends land on time, not in bursts.

    The early-wake margin is twice the running mean of how late sleeps wake, between 20 and
    250 us: on a quiet machine the loop sleeps almost to the deadline; on a busy VM, whose
    timer wakes tens of microseconds late, it spins more. It does not chase the rare long
    stall (a preempted thread is late whether it sleeps or spins), which would turn every
    wait into a spin and, with several streams, starve the CPUs it shares.
    """
    cdef uint64_t now = clock_ns(CLOCK_MONOTONIC)
    cdef uint64_t wake, late
    cdef timespec req
    if deadline > now + pacer.margin + MIN_MARGIN_NS:
        wake = deadline - pacer.margin
        req.tv_sec = <time_t>(wake // 1000000000ULL)
        req.tv_nsec = <long>(wake % 1000000000ULL)
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &req, NULL)
        pacer.sleeps += 1
        now = clock_ns(CLOCK_MONOTONIC)
        late = now - wake if now > wake else 0
        pacer.latency += (<double>late - pacer.latency) / 8.0
        pacer.margin = <uint64_t>(2.0 * pacer.latency)
        if pacer.margin < MIN_MARGIN_NS:
            pacer.margin = MIN_MARGIN_NS
        elif pacer.margin > MAX_MARGIN_NS:
            pacer.margin = MAX_MARGIN_NS
        if now > deadline:
            pacer.overslept += 1
    while now < deadline:
        now = clock_ns(CLOCK_MONOTONIC)


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


def batch_size(int engine, Py_ssize_t size, double rate_pps=0.0, int batch=0):
    """Datagrams per syscall the send loop uses for this engine, payload size and rate."""
    cdef int most = 1
    if engine == ENGINE_MMSG_:
        most = MAX_BATCH_
    elif engine == ENGINE_GSO_:
        most = max(1, min(MAX_GSO_SEGMENTS_, GSO_MAX_BYTES_ // size))
    if batch > 0:
        most = min(most, batch)
    if rate_pps > 0:
        most = max(1, min(most, <int>(rate_pps * PACING_BATCH_NS_ * 1e-9)))
    return most


def send_datagrams(int fd, int engine, Py_ssize_t size, uint64_t session, uint64_t first_seq=0,
                   double duration=1.0, double rate_pps=0.0, uint64_t max_count=0, int batch=0,
                   int flags=0, StopFlag stop=None, bint check_signals=True):
    """Send DATA datagrams of ``size`` bytes on a connected socket ``fd``.

    Stops after ``duration`` seconds or ``max_count`` datagrams, whichever comes first, or
    when ``stop`` is set. ``rate_pps`` > 0 paces sends to absolute deadlines (slot k is due
    at start + k / rate); 0 sends as fast as the kernel takes them. ``batch`` caps the
    datagrams per syscall (mmsg, gso); 0 picks one. ``check_signals`` is for the main thread
    (other threads cannot see signals and should pass a ``stop`` flag instead).

    Returns a dict: ``sent`` (datagrams the kernel accepted), ``next_seq``, ``errors``
    ({errno: count}), ``elapsed_ns`` (the sending interval: start to the end of the last
    slot when paced), ``syscalls``, ``batch``, gap statistics between syscalls in ns
    (``gap_min_ns``, ``gap_max_ns``, ``gap_mean_ns``, ``gap_std_ns`` and percentiles
    ``gap_p1_ns`` ... ``gap_p999_ns``), ``target_gap_ns``, lateness against the schedule
    (``late_p50_ns``, ``late_p99_ns``, ``late_max_ns``; paced only), ``schedule_resets``
    (times the sender fell more than 1 s behind and gave that time up), ``sleeps``,
    ``overslept``, ``gso_fallback_errno`` (the errno with which the kernel refused a GSO send,
    after which the loop went on with sendmmsg; else 0), ``gso_sent`` (datagrams sent by GSO
    before that) and ``interrupt`` (the exception a signal raised, or None).
    """
    if size < HEADER_SIZE:
        raise ValueError(f"payload size {size} is smaller than the {HEADER_SIZE}-byte header")
    if engine not in (ENGINE_SEND_, ENGINE_MMSG_, ENGINE_GSO_):
        raise ValueError(f"unknown engine {engine}")
    if engine == ENGINE_GSO_ and size > 65535:
        raise ValueError("a GSO segment size must fit in 16 bits")
    cdef int most = batch_size(engine, size, rate_pps, batch)
    cdef double interval_ns = 1e9 / rate_pps if rate_pps > 0 else 0.0

    cdef _SendBuffers bufs = _SendBuffers(size, most)
    cdef Histogram gaps = Histogram()
    cdef Histogram lateness = Histogram()
    cdef int i
    # Payloads of 40 bytes or more carry their scheduled send time after the header, so the
    # receiver can measure delay from the schedule (docs/engines.md, "One-way delay").
    cdef bint has_sched = size >= SCHED_MIN_SIZE
    if has_sched:
        flags |= FLAG_SCHEDULED
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
    cdef int *stop_flag = &stop.flag if stop is not None else NULL
    cdef Pacer pacer
    pacer.margin = 2 * MIN_MARGIN_NS
    pacer.latency = MIN_MARGIN_NS
    pacer.sleeps = 0
    pacer.overslept = 0
    cdef uint64_t t_start = clock_ns(CLOCK_MONOTONIC)
    # Deadlines are on CLOCK_MONOTONIC; the wire carries CLOCK_REALTIME, like tx_ns.
    cdef uint64_t realtime_shift = clock_ns(CLOCK_REALTIME) - t_start
    cdef uint64_t sched_first = 0
    cdef uint64_t origin = t_start  # slot k is due at origin + k * interval
    cdef uint64_t t_end = t_start + <uint64_t>(duration * 1e9) if duration > 0 else <uint64_t>-1
    cdef uint64_t t_stop = 0  # when the paced schedule ran out: the end of the sending interval
    cdef uint64_t next_check = t_start + SIGNAL_CHECK_NS
    cdef uint64_t now, deadline, due, tx, last_call = 0, gap, gap_min = <uint64_t>-1
    cdef uint64_t last_span = 0
    cdef double gap_mean = 0.0, gap_m2 = 0.0, delta  # Welford: stable at any gap size
    cdef int n, r, err, gso_errno = 0
    cdef uint64_t gso_sent = 0
    cdef ssize_t rs
    cdef object interrupt = None
    cdef bint signalled = 0
    cdef unsigned long old_slack = <unsigned long>prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)

    prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # 1 us timer slack (this thread): sleeps end when asked
    with nogil:
        while True:
            now = clock_ns(CLOCK_MONOTONIC)
            if now >= t_end:
                break
            if max_count and sent >= max_count:
                break
            if stop_flag != NULL and stop_flag[0]:
                break
            if check_signals and now >= next_check:
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
                deadline = origin + <uint64_t>(<double>scheduled * interval_ns)
                if deadline >= t_end:
                    t_stop = t_end
                    break
                if now > deadline + MAX_LAG_NS:
                    # Far behind (the machine stalled us): give the time up rather than burst.
                    origin += now - deadline
                    deadline = now
                    resets += 1
                # Behind schedule, catch up at no more than CATCHUP times the rate.
                due = deadline
                if syscalls and due < last_call + last_span // CATCHUP_:
                    due = last_call + last_span // CATCHUP_
                if now < due:
                    wait_until(&pacer, due)
                    now = clock_ns(CLOCK_MONOTONIC)
                lateness.add(now - deadline if now > deadline else 0)
                sched_first = deadline + realtime_shift
                last_span = <uint64_t>(interval_ns * n)
            if syscalls:
                gap = now - last_call
                gaps.add(gap)
                if gap < gap_min:
                    gap_min = gap
                delta = <double>gap - gap_mean
                gap_mean += delta / <double>syscalls
                gap_m2 += delta * (<double>gap - gap_mean)
            last_call = now
            syscalls += 1
            tx = clock_ns(CLOCK_REALTIME)
            if interval_ns <= 0:
                sched_first = tx  # unpaced: no schedule but "now"
            if engine == ENGINE_SEND_:
                stamp(bufs.data, seq, tx, has_sched, sched_first)
                rs = send(fd, bufs.data, size, 0)
                r = 1 if rs >= 0 else -1
            elif engine == ENGINE_MMSG_:
                for i in range(n):
                    stamp(bufs.data + i * size, seq + i, tx, has_sched,
                          sched_first + <uint64_t>(i * interval_ns))
                r = sendmmsg(fd, bufs.msgs, n, 0)
            else:
                for i in range(n):
                    stamp(bufs.data + i * size, seq + i, tx, has_sched,
                          sched_first + <uint64_t>(i * interval_ns))
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
                if engine == ENGINE_GSO_ and sent == 0 and err == EINVAL and most > OLD_GSO_SEGMENTS_:
                    # An older kernel takes at most 64 segments per send: use that, and go on.
                    most = OLD_GSO_SEGMENTS_
                    syscalls = 0
                    continue
                if engine == ENGINE_GSO_ and (err == EMSGSIZE or err == EINVAL or err == EIO
                                              or err == ENOPROTOOPT or err == EOPNOTSUPP):
                    # The kernel will not segment: no GSO here (old kernel, no checksum offload)
                    # or no longer (the path MTU fell below the payload mid-run). The same
                    # datagrams go on by sendmmsg, which fragments or fails like any sender.
                    gso_errno = err
                    gso_sent = sent
                    engine = ENGINE_MMSG_
                    continue
                errs[err if err < MAX_ERRNO else 0] += 1
                scheduled += n  # the slot is spent; the same sequence number goes out next time
        if interval_ns > 0 and t_stop == 0 and not signalled:
            # Stopped by count or flag: the interval ends where the next slot would have begun.
            t_stop = origin + <uint64_t>(<double>scheduled * interval_ns)
            if t_stop > t_end:
                t_stop = t_end
        if t_stop:
            # Paced: the sending interval runs to the end of the last slot, so a rate of
            # R for D seconds reports R, not R * n / (n - 1).
            now = clock_ns(CLOCK_MONOTONIC)
            if t_stop > now and (stop_flag == NULL or not stop_flag[0]):
                wait_until(&pacer, t_stop)
    prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0)
    cdef uint64_t elapsed = clock_ns(CLOCK_MONOTONIC) - t_start
    cdef uint64_t ngaps = syscalls - 1 if syscalls > 1 else 0
    result = {
        "sent": sent,
        "next_seq": seq,
        "errors": {e: errs[e] for e in range(MAX_ERRNO) if errs[e]},
        "elapsed_ns": elapsed,
        "syscalls": syscalls,
        "batch": most,
        "gap_min_ns": gap_min if ngaps else 0,
        "gap_max_ns": gaps.max_value,
        "gap_mean_ns": gap_mean if ngaps else 0.0,
        "gap_std_ns": (gap_m2 / ngaps) ** 0.5 if ngaps else 0.0,
        "target_gap_ns": interval_ns * most,
        "schedule_resets": resets,
        "sleeps": pacer.sleeps,
        "overslept": pacer.overslept,
        "gso_fallback_errno": gso_errno,
        "gso_sent": gso_sent,
        "interrupt": interrupt,
    }
    result.update(gaps.summary("gap"))
    late = lateness.summary("late")
    result.update({k: late[k] for k in ("late_p50_ns", "late_p99_ns", "late_max_ns")})
    return result


cdef class Receiver:
    """Counts the DATA datagrams of one session arriving on a socket.

    Each receive buffer is one message of ``recvmmsg``; with UDP_GRO on the socket the kernel
    may coalesce several datagrams of the same flow into one buffer and says so with a
    ``UDP_GRO`` control message carrying the segment size, and the buffer is split at that
    size and every datagram counted on its own (``gro_buffers`` counts the coalesced buffers,
    ``buffers`` all of them, ``max_segments`` the most datagrams one buffer held).

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
    cdef readonly uint64_t buffers, max_segments, naps, polls
    cdef readonly int64_t first_rx_ns, last_rx_ns
    cdef readonly int64_t min_transit_ns, max_transit_ns
    cdef double transit_sum
    cdef double jitter
    cdef uint64_t transit_samples
    cdef int64_t last_transit
    cdef bint have_transit
    cdef readonly uint32_t rxq_overflow
    cdef readonly bint saw_overflow_count
    cdef readonly uint64_t first_rx_count    # datagrams stamped with the first arrival time
    cdef SignedHist owd                      # receive time - actual send time
    cdef SignedHist sched_owd                # receive time - scheduled send time
    # Loss episodes (RFC 3357): a sequence number is judged once it leaves the window, in
    # order, and closes a run of losses or of arrivals.
    cdef uint64_t next_judged
    cdef bint run_lost
    cdef uint64_t run_length
    cdef Hist loss_runs, arrival_runs
    # Per-datagram trace: arrays owned by Python (kept alive by trace_arrays), filled in order.
    cdef readonly object trace_arrays
    cdef uint64_t *trace_seq
    cdef int64_t *trace_sched
    cdef int64_t *trace_tx
    cdef int64_t *trace_rx
    cdef uint8_t *trace_dup
    cdef readonly uint64_t trace_length, trace_capacity, trace_cut
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
        cdef uint64_t n = self.transit_samples
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
            "buffers": self.buffers,
            "transit_samples": self.transit_samples,
            "max_segments": self.max_segments,
            "first_rx_ns": self.first_rx_ns,
            "last_rx_ns": self.last_rx_ns,
            "jitter_ms": self.jitter / 1e6,
            "min_transit_ns": self.min_transit_ns if self.received else 0,
            "max_transit_ns": self.max_transit_ns if self.received else 0,
            "mean_transit_ns": self.mean_transit_ns,
            "rxq_overflow": self.rxq_overflow if self.saw_overflow_count else None,
            "first_rx_count": self.first_rx_count,
            **signed_summary(&self.owd, "owd"),
            **signed_summary(&self.sched_owd, "sched_owd"),
            **self.loss_episodes(),
        }

    def set_trace(self, seq, scheduled_ns, tx_ns, rx_ns, duplicate):
        """Record every arriving datagram into these equal-length numpy arrays (uint64, int64,
        int64, int64, uint8) until they are full; later arrivals are counted in ``trace_cut``."""
        cdef uint64_t[::1] s = seq
        cdef int64_t[::1] sc = scheduled_ns
        cdef int64_t[::1] t = tx_ns
        cdef int64_t[::1] r = rx_ns
        cdef uint8_t[::1] d = duplicate
        cdef Py_ssize_t n = s.shape[0]
        if not (sc.shape[0] == t.shape[0] == r.shape[0] == d.shape[0] == n):
            raise ValueError("trace arrays must have the same length")
        self.trace_arrays = (seq, scheduled_ns, tx_ns, rx_ns, duplicate)
        self.trace_capacity = n
        self.trace_length = 0
        self.trace_cut = 0
        if n:
            self.trace_seq, self.trace_sched, self.trace_tx = &s[0], &sc[0], &t[0]
            self.trace_rx, self.trace_dup = &r[0], &d[0]

    cdef inline void trace(self, uint64_t seq, uint64_t sched, uint64_t tx, int64_t rx,
                           bint dup) noexcept nogil:
        cdef uint64_t k = self.trace_length
        if k >= self.trace_capacity:
            if self.trace_capacity:
                self.trace_cut += 1
            return
        self.trace_seq[k] = seq
        self.trace_sched[k] = <int64_t>sched
        self.trace_tx[k] = <int64_t>tx
        self.trace_rx[k] = rx
        self.trace_dup[k] = dup
        self.trace_length = k + 1

    cdef inline void judge(self, bint lost, uint64_t count) noexcept nogil:
        """Extend the current run of losses (or arrivals) by ``count`` sequence numbers."""
        if self.run_length and lost != self.run_lost:
            hist_add(&self.loss_runs if self.run_lost else &self.arrival_runs, self.run_length)
            self.run_length = 0
        self.run_lost = lost
        self.run_length += count

    cdef inline bint missing(self, uint64_t s) noexcept nogil:
        return (self.window[(s >> 6) & (WINDOW_WORDS - 1)] >> (s & 63)) & 1 == 0

    cdef inline void judge_until(self, uint64_t end) noexcept nogil:
        """Judge every sequence number below ``end`` (all still in the window), from its bit."""
        cdef uint64_t s = self.next_judged
        while s < end:
            self.judge(self.missing(s), 1)
            s += 1
        if end > self.next_judged:
            self.next_judged = end

    def loss_episodes(self):
        """Loss bursts and the gaps between them (RFC 3357) over the sequence numbers from the
        first received (or 0, when that is within the window) to the highest received:
        ``loss_burst_count``, ``loss_burst_mean``, ``loss_burst_max``, ``loss_gap_mean``
        (datagrams received between bursts), ``loss_conditional`` (the chance a datagram is
        lost when the one before it was) and both histograms as {bucket's lowest length: count},
        exact below 32. Reads a copy of the run state: the receiver goes on unchanged."""
        cdef Hist losses = self.loss_runs
        cdef Hist arrivals = self.arrival_runs
        cdef bint lost = self.run_lost
        cdef uint64_t length = self.run_length, s
        cdef int i
        if self.started and self.next_judged <= self.highest:
            s = self.next_judged
            while True:  # not `s <= highest`: that never ends when highest is 2**64 - 1
                if length and self.missing(s) != lost:
                    hist_add(&losses if lost else &arrivals, length)
                    length = 0
                lost = self.missing(s)
                length += 1
                if s == self.highest:
                    break
                s += 1
        if length:
            hist_add(&losses if lost else &arrivals, length)
        bursts, gaps = {}, {}
        lost_total = arrived_total = 0
        for i in range(HIST_BINS):
            if losses.bins[i]:
                bursts[hist_lower(i)] = losses.bins[i]
                lost_total += losses.bins[i] * bucket_middle(i)
            if arrivals.bins[i]:
                gaps[hist_lower(i)] = arrivals.bins[i]
                arrived_total += arrivals.bins[i] * bucket_middle(i)
        n = losses.count
        return {
            "loss_burst_count": n,
            "loss_burst_mean": lost_total / n if n else 0.0,
            "loss_burst_max": losses.max_value,
            "loss_gap_mean": arrived_total / arrivals.count if arrivals.count else 0.0,
            # Of the lost datagrams, those whose predecessor was lost too: (L - B) / L. The
            # range ends at a received datagram, so every lost one has a successor.
            "loss_conditional": (lost_total - n) / lost_total if lost_total else 0.0,
            "loss_burst_histogram": bursts,
            "loss_gap_histogram": gaps,
        }

    cdef inline void clear_bit(self, uint64_t s) noexcept nogil:
        self.window[(s >> 6) & (WINDOW_WORDS - 1)] &= ~(1ULL << (s & 63))

    cdef inline void advance(self, uint64_t seq) noexcept nogil:
        """Slide the window so that ``seq`` is the highest sequence number seen, judging the
        sequence numbers that leave it (for loss episodes) before their bits are reused."""
        cdef uint64_t s = self.highest + 1
        if seq - self.highest >= WINDOW_BITS:
            self.judge_until(self.highest + 1)
            # Everything between the old highest and the new window was never seen: lost.
            if seq - WINDOW_BITS + 1 > self.next_judged:
                self.judge(1, seq - WINDOW_BITS + 1 - self.next_judged)
                self.next_judged = seq - WINDOW_BITS + 1
            memset(self.window, 0, sizeof(self.window))
        else:
            if seq >= WINDOW_BITS:
                self.judge_until(seq - WINDOW_BITS + 1)
            while s < seq:
                if (s & 63) == 0 and seq - s >= 64:
                    self.window[(s >> 6) & (WINDOW_WORDS - 1)] = 0
                    s += 64
                else:
                    self.clear_bit(s)
                    s += 1
        self.highest = seq

    cdef void on_datagram(self, const unsigned char *p, size_t n, int64_t rx_ns, bint timed) noexcept nogil:
        cdef uint32_t magic
        cdef uint64_t seq, gap, behind, word_bit, tx_ns, sched_ns
        cdef int64_t transit, d
        cdef uint64_t *word
        cdef bint in_window = 1
        if n < HEADER_SIZE:
            self.foreign += 1
            return
        memcpy(&magic, p + OFF_MAGIC, 4)
        if (be32toh(magic) != WIRE_MAGIC or p[OFF_VERSION] != WIRE_VERSION
                or p[OFF_KIND] != KIND_DATA or read_u64(p + OFF_SESSION) != self.session):
            self.foreign += 1
            return
        seq = read_u64(p + OFF_SEQ)
        tx_ns = read_u64(p + OFF_TX_NS)
        sched_ns = tx_ns
        if n >= SCHED_MIN_SIZE and (p[OFF_FLAGS + 1] & FLAG_SCHEDULED):
            sched_ns = read_u64(p + OFF_SCHED_NS)
            # A batch leaves at its first datagram's deadline, so the rest leave early:
            # delay counts from the earlier of the two times (docs/engines.md).
            if sched_ns > tx_ns:
                sched_ns = tx_ns
        if not self.started:
            self.started = 1
            self.highest = seq
            self.first_rx_ns = rx_ns
            # Senders count from 0: losses before the first arrival are episodes too.
            self.next_judged = 0 if seq < WINDOW_BITS else seq
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
                in_window = 0
            else:
                word = &self.window[(seq >> 6) & (WINDOW_WORDS - 1)]
                word_bit = 1ULL << (seq & 63)
                if word[0] & word_bit:
                    self.duplicates += 1
                    self.trace(seq, sched_ns, tx_ns, rx_ns, 1)
                    return
                self.reordered += 1
                if behind > self.max_reorder:
                    self.max_reorder = behind
        if in_window:
            self.window[(seq >> 6) & (WINDOW_WORDS - 1)] |= 1ULL << (seq & 63)
        self.received += 1
        self.payload_bytes += n
        self.last_rx_ns = rx_ns
        if rx_ns == self.first_rx_ns:
            self.first_rx_count += 1
        self.trace(seq, sched_ns, tx_ns, rx_ns, 0)
        # Every datagram is a delay sample; GRO-coalesced ones share their buffer's time.
        signed_add(&self.owd, rx_ns - <int64_t>tx_ns)
        signed_add(&self.sched_owd, rx_ns - <int64_t>sched_ns)
        if not timed or not in_window:
            return
        # RFC 3550 interarrival jitter: J += (|D(i-1,i)| - J) / 16, in arrival order
        transit = rx_ns - <int64_t>tx_ns
        self.transit_samples += 1
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
            self.on_datagram(&payload[0], payload.shape[0], rx_ns, 1)

    def run(self, int fd, double idle_timeout=0.0):
        """Receive and count until ``request_stop`` is called, or, with ``idle_timeout`` > 0,
        until nothing has arrived for that many seconds. Returns the number of datagrams
        (valid or not) taken off the socket by this call.

        While datagrams pour in (more than 20k/s), the loop naps 50 us between empty reads
        instead of waiting in poll(): a receiver parked on the socket's wait queue makes the
        sender's kernel path wake it for nearly every datagram, and on loopback, where the
        sender's CPU delivers the datagram, those wakeups cost the sender a third of its rate.
        When the flow thins out, it waits in poll() again and costs nothing while idle.
        """
        cdef pollfd pfd
        cdef int r, i, err, got
        cdef unsigned int length, seg, off, piece, segments
        cdef int gso
        cdef uint64_t taken = 0
        cdef int64_t rx_ns, batch_ns
        cdef uint64_t idle_ns = <uint64_t>(idle_timeout * 1e9)
        cdef uint64_t now = clock_ns(CLOCK_MONOTONIC)
        cdef uint64_t last_data = now
        cdef uint64_t next_check = now + SIGNAL_CHECK_NS
        cdef uint64_t window_start = now, window_count = 0
        cdef bint busy = 0
        cdef cmsghdr *cm
        cdef timespec ts, nap
        cdef uint32_t ovfl
        cdef object failure = None
        cdef bint failed = 0
        cdef unsigned long old_slack = <unsigned long>prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
        nap.tv_sec = 0
        nap.tv_nsec = RX_NAP_NS
        err = 0
        pfd.fd = fd
        pfd.events = POLLIN
        self.stop_flag = 0
        # Naps may run long: the kernel's timestamps time the datagrams, not the wakeup, and 100 us
        # of arrivals fits the buffer many times over. A receiver waking to the microsecond read
        # the queue more often and cost a GSO sender on loopback 8-11% of its rate (docs/engines.md,
        # "Why its naps are not exact"). Set, not inherited from whichever thread runs it.
        prctl(PR_SET_TIMERSLACK, RX_NAP_SLACK_NS, 0, 0, 0)
        with nogil:
            while not self.stop_flag:
                now = clock_ns(CLOCK_MONOTONIC)
                if idle_ns and now - last_data > idle_ns:
                    break
                if now - window_start >= RX_BUSY_WINDOW_NS:
                    busy = window_count >= RX_BUSY_MIN
                    window_start = now
                    window_count = 0
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
                for i in range(RX_VLEN):
                    self.msgs[i].msg_hdr.msg_control = self.ctrl + i * RX_CTRLSIZE
                    self.msgs[i].msg_hdr.msg_controllen = RX_CTRLSIZE
                    self.msgs[i].msg_hdr.msg_flags = 0
                got = recvmmsg(fd, self.msgs, RX_VLEN, MSG_DONTWAIT, NULL)
                if got < 0:
                    err = errno
                    if err == EAGAIN:  # EWOULDBLOCK == EAGAIN on Linux
                        if busy:
                            nanosleep(&nap, NULL)
                            self.naps += 1
                            continue
                        self.polls += 1
                        r = poll(&pfd, 1, POLL_MS)
                        if r < 0 and errno != EINTR:
                            err = errno
                            failed = 1
                            break
                        continue
                    if err == EINTR or err == ECONNREFUSED:
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
                    self.buffers += 1
                    if gso > 0 and <unsigned int>gso < length:
                        # UDP_GRO coalesced several datagrams into one buffer: split them
                        self.gro_buffers += 1
                        seg = <unsigned int>gso
                    else:
                        seg = length
                    off = 0
                    segments = 0
                    while off < length or (length == 0 and off == 0):
                        piece = seg if length - off > seg else length - off
                        # Datagrams GRO coalesced share one kernel timestamp (and, from a GSO
                        # sender, one send time): time the buffer once, by its first datagram,
                        # or jitter would be diluted by zero differences.
                        self.on_datagram(self.bufs + i * RX_BUFSIZE + off, piece, rx_ns, off == 0)
                        taken += 1
                        segments += 1
                        if seg == 0:
                            break
                        off += seg
                    window_count += segments
                    if segments > self.max_segments:
                        self.max_segments = segments
                if got < RX_VLEN and busy:
                    # The queue is empty: let it fill while we nap, off its wait queue.
                    nanosleep(&nap, NULL)
                    self.naps += 1
        prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0)
        if failed:
            if failure is not None:
                raise failure
            raise OSError(err, strerror(err).decode())
        return taken
