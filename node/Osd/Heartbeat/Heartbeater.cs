using Microsoft.Extensions.Logging;

namespace Appliance.Osd.Heartbeat;

/// <summary>How heartbeats leave this OSD: best effort, never blocking (the real one is a UDP datagram; tests deliver
/// in process, or drop). A reply goes back to where its ping came from, so only pings are addressed by OSD id.</summary>
public interface IHeartbeatNetwork
{
    void Send(int osd, in HeartbeatPacket packet);
}

/// <summary>Where the heartbeat logic's verdicts go (the daemon sends them to the monitors off the heartbeat
/// thread). Called without any lock of the heartbeater held; implementations must not block.</summary>
public interface IHeartbeatReports
{
    /// <summary>Peer <paramref name="osd"/> has not answered for <paramref name="silent"/> (past the grace). Called again
    /// every grace while it stays silent, so the monitors' copy of the report does not expire.</summary>
    void Failed(int osd, TimeSpan silent);

    /// <summary>A peer reported failed answers again: withdraw the report.</summary>
    void Recovered(int osd);
}

/// <summary>
/// The heartbeat logic of one OSD, free of sockets and threads: <see cref="Tick"/> (every <see cref="Interval"/>,
/// from a dedicated thread in the daemon) pings every peer and judges them; <see cref="Receive"/> answers pings and
/// takes replies. A peer is alive at the newest stamp of ours it echoed; one silent past <see cref="Grace"/> is
/// reported failed, and the report is withdrawn when it answers a ping sent within the grace. Pings are not answered
/// while this OSD's own store has an I/O outstanding longer than <see cref="WatchdogLimit"/> (a hung disk makes a
/// down OSD). Time comes from a <see cref="TimeProvider"/>, so tests drive it with a manual clock.
/// </summary>
public sealed class Heartbeater(int self, IHeartbeatNetwork network, IHeartbeatReports reports, TimeProvider time, Func<TimeSpan> oldestIoAge, ILogger logger)
{
    private sealed class PeerState(long aliveAt)
    {
        /// <summary>Newest moment (our timestamp) the peer is known alive at: when it was added, or the stamp of the
        /// newest ping it answered.</summary>
        public long AliveAt = aliveAt;
        public bool Reported;
        public long ReportedAt;
    }

    private readonly Lock _lock = new();
    private readonly Dictionary<int, PeerState> _peers = [];
    private readonly List<int> _toPing = [];
    private readonly List<(int Osd, TimeSpan Silent)> _failed = [];
    private ulong _seq;
    private long _lastTick;
    private bool _watchdogTripped;

    public int Self => self;

    /// <summary>Time between pings to each peer (osd_heartbeat_interval).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Silence past which a peer is reported failed (osd_heartbeat_grace).</summary>
    public TimeSpan Grace { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Age of this OSD's oldest outstanding store I/O past which it stops answering pings; null: the grace
    /// (a disk slower than that is as good as dead to its peers).</summary>
    public TimeSpan? WatchdogLimit { get; set; }

    /// <summary>Pings answered and left unanswered because of the watchdog, for tests and metrics.</summary>
    public long PingsAnswered { get; private set; }
    public long PingsWithheld { get; private set; }

    public IReadOnlyCollection<int> Peers
    {
        get
        {
            lock (_lock)
            {
                return [.. _peers.Keys];
            }
        }
    }

    /// <summary>Peers currently reported failed.</summary>
    public IReadOnlyCollection<int> Reported
    {
        get
        {
            lock (_lock)
            {
                return [.. _peers.Where(kv => kv.Value.Reported).Select(kv => kv.Key)];
            }
        }
    }

    /// <summary>Whether the watchdog holds answers back: the oldest store I/O is older than the limit.</summary>
    public bool WatchdogTripped
    {
        get
        {
            var limit = WatchdogLimit ?? Grace;
            var tripped = oldestIoAge() > limit;
            lock (_lock)
            {
                if (tripped != _watchdogTripped)
                {
                    _watchdogTripped = tripped;
                    if (tripped)
                    {
                        logger.LogError("osd.{Osd}: a store I/O has been outstanding for {Age:0.0} s (limit {Limit:0.0} s): not answering heartbeats until it completes",
                            self, oldestIoAge().TotalSeconds, limit.TotalSeconds);
                    }
                    else
                    {
                        logger.LogWarning("osd.{Osd}: store I/O completes again; answering heartbeats", self);
                    }
                }
            }
            return tripped;
        }
    }

    /// <summary>The OSDs to watch (they share PGs with this one, or are its neighbours). A new peer gets a whole
    /// grace from now; a peer no longer watched is forgotten (a report against it is withdrawn).</summary>
    public void SetPeers(IEnumerable<int> peers)
    {
        var now = time.GetTimestamp();
        List<int>? withdrawn = null;
        lock (_lock)
        {
            var want = peers.Where(p => p != self && p >= 0).ToHashSet();
            foreach (var (osd, state) in _peers)
            {
                if (!want.Contains(osd))
                {
                    _peers.Remove(osd);
                    if (state.Reported)
                    {
                        (withdrawn ??= []).Add(osd);
                    }
                }
            }
            foreach (var osd in want)
            {
                _peers.TryAdd(osd, new PeerState(now));
            }
        }
        foreach (var osd in withdrawn ?? [])
        {
            reports.Recovered(osd);
        }
    }

    /// <summary>Pings every peer, then reports those silent past the grace (again every grace while they stay so).</summary>
    public void Tick()
    {
        var now = time.GetTimestamp();
        _toPing.Clear();
        _failed.Clear();
        ulong firstSeq;
        lock (_lock)
        {
            if (_lastTick != 0)
            {
                var gap = time.GetElapsedTime(_lastTick, now);
                var stallLimit = TimeSpan.FromTicks(Math.Max(Grace.Ticks / 2, Interval.Ticks * 4));
                if (gap > stallLimit)
                {
                    // This OSD itself did not run for a while (stopped, swapped, a long GC pause): its peers' silence
                    // is ours. Each gets a fresh grace from now instead of being reported for our own stall.
                    logger.LogWarning("osd.{Osd}: heartbeat tick {Gap:0.0} s late (this OSD was not running); peers get a fresh grace", self, gap.TotalSeconds);
                    foreach (var state in _peers.Values)
                    {
                        state.AliveAt = Math.Max(state.AliveAt, now);
                    }
                }
            }
            _lastTick = now;
            _toPing.AddRange(_peers.Keys);
            firstSeq = _seq;
            _seq += (ulong)_toPing.Count;
            foreach (var (osd, state) in _peers)
            {
                var silent = time.GetElapsedTime(state.AliveAt, now);
                if (silent > Grace && (!state.Reported || time.GetElapsedTime(state.ReportedAt, now) >= Grace))
                {
                    state.Reported = true;
                    state.ReportedAt = now;
                    _failed.Add((osd, silent));
                }
            }
        }
        // Sent and reported outside the lock: a reply may arrive (on another thread) while we send.
        for (var i = 0; i < _toPing.Count; i++)
        {
            network.Send(_toPing[i], new HeartbeatPacket(HeartbeatKind.Ping, self, _toPing[i], firstSeq + (ulong)i, now));
        }
        foreach (var (osd, silent) in _failed)
        {
            logger.LogWarning("osd.{Osd}: osd.{Peer} has not answered heartbeats for {Silent:0.0} s (grace {Grace:0.0} s); reporting it failed",
                self, osd, silent.TotalSeconds, Grace.TotalSeconds);
            reports.Failed(osd, silent);
        }
    }

    /// <summary>Takes a heartbeat addressed to this OSD: a ping is answered (the reply to send back), unless the
    /// watchdog holds answers back; a reply marks its peer alive at the stamp it echoes.</summary>
    public HeartbeatPacket? Receive(in HeartbeatPacket packet)
    {
        if (packet.To != self)
        {
            return null;
        }
        if (packet.Kind == HeartbeatKind.Ping)
        {
            if (WatchdogTripped)
            {
                PingsWithheld++;
                return null;
            }
            PingsAnswered++;
            return packet.ReplyFrom(self);
        }
        var now = time.GetTimestamp();
        var recovered = false;
        lock (_lock)
        {
            if (!_peers.TryGetValue(packet.From, out var state) || packet.Stamp <= state.AliveAt || packet.Stamp > now)
            {
                // Not watched, an older (or replayed) answer, or a stamp we never sent.
                return null;
            }
            state.AliveAt = packet.Stamp;
            // Withdrawn only for an answer to a ping sent within the grace: a very late answer proves life long ago.
            if (state.Reported && time.GetElapsedTime(packet.Stamp, now) <= Grace)
            {
                state.Reported = false;
                recovered = true;
            }
        }
        if (recovered)
        {
            logger.LogWarning("osd.{Osd}: osd.{Peer} answers heartbeats again; withdrawing its failure report", self, packet.From);
            reports.Recovered(packet.From);
        }
        return null;
    }
}
