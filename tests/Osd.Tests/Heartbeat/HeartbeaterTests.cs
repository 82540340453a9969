using Appliance.Osd.Heartbeat;
using Appliance.Platform.Devices;
using Microsoft.Extensions.Logging.Abstractions;

namespace Appliance.Osd.Tests.Heartbeat;

/// <summary>A clock that moves only when told (ticks of 100 ns).</summary>
public sealed class ManualClock : TimeProvider
{
    private long _now = TimeSpan.FromHours(1).Ticks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Interlocked.Read(ref _now);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _now, by.Ticks);
}

/// <summary>Heartbeaters in one process: a ping is delivered to its target's <see cref="Heartbeater.Receive"/> and
/// the answer to the pinger's, unless either end is stopped (as a SIGSTOPped process neither answers nor pings).</summary>
public sealed class InProcessHeartbeats : IHeartbeatNetwork
{
    public Dictionary<int, Heartbeater> Osds { get; } = [];
    public HashSet<int> Stopped { get; } = [];

    public void Send(int osd, in HeartbeatPacket packet)
    {
        if (Stopped.Contains(osd) || Stopped.Contains(packet.From) || !Osds.TryGetValue(osd, out var target))
        {
            return;
        }
        if (target.Receive(packet) is { } reply && Osds.TryGetValue(reply.To, out var pinger))
        {
            pinger.Receive(reply);
        }
    }
}

/// <summary>What a heartbeater told the monitors, in order.</summary>
public sealed class RecordedReports : IHeartbeatReports
{
    public List<(int Osd, bool Failed)> Events { get; } = [];

    public void Failed(int osd, TimeSpan silent) => Events.Add((osd, true));

    public void Recovered(int osd) => Events.Add((osd, false));
}

public sealed class HeartbeaterTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(3);

    private sealed class Rig
    {
        public ManualClock Clock { get; } = new();
        public InProcessHeartbeats Net { get; } = new();
        public Dictionary<int, RecordedReports> Reports { get; } = [];
        public Dictionary<int, TimeSpan> IoAge { get; } = [];

        public Rig(int osds)
        {
            for (var i = 0; i < osds; i++)
            {
                var id = i;
                Reports[id] = new RecordedReports();
                IoAge[id] = TimeSpan.Zero;
                var hb = new Heartbeater(id, Net, Reports[id], Clock, () => IoAge[id], NullLogger.Instance) { Interval = Interval, Grace = Grace };
                Net.Osds[id] = hb;
            }
            foreach (var hb in Net.Osds.Values)
            {
                hb.SetPeers(Net.Osds.Keys);
            }
        }

        /// <summary>Advances the clock by one interval and ticks every running heartbeater.</summary>
        public void Step()
        {
            Clock.Advance(Interval);
            foreach (var (id, hb) in Net.Osds)
            {
                if (!Net.Stopped.Contains(id))
                {
                    hb.Tick();
                }
            }
        }

        public TimeSpan Run(TimeSpan span)
        {
            for (var t = TimeSpan.Zero; t < span; t += Interval)
            {
                Step();
            }
            return span;
        }
    }

    [Fact]
    public void Peers_that_answer_are_never_reported()
    {
        var rig = new Rig(3);
        rig.Run(TimeSpan.FromSeconds(30));
        Assert.All(rig.Reports.Values, r => Assert.Empty(r.Events));
        Assert.All(rig.Net.Osds.Values, hb => Assert.True(hb.PingsAnswered >= 2 * 60, $"osd.{hb.Self} answered {hb.PingsAnswered} pings"));
    }

    [Fact]
    public void A_silent_peer_is_reported_after_the_grace_again_every_grace_and_withdrawn_when_it_answers()
    {
        var rig = new Rig(3);
        rig.Run(TimeSpan.FromSeconds(2));
        rig.Net.Stopped.Add(2);

        // Within the grace nobody reports; just past it (the next tick) both others do.
        var silent = TimeSpan.Zero;
        while (rig.Reports[0].Events.Count == 0)
        {
            rig.Step();
            silent += Interval;
            Assert.True(silent <= Grace + (2 * Interval), $"osd.2 silent {silent.TotalSeconds} s and not reported");
        }
        Assert.True(silent > Grace - Interval, $"osd.2 reported after only {silent.TotalSeconds} s of silence (grace {Grace.TotalSeconds} s)");
        Assert.Equal([(2, true)], rig.Reports[0].Events);
        Assert.Equal([(2, true)], rig.Reports[1].Events);
        Assert.Equal([2], rig.Net.Osds[0].Reported);

        // Still silent: reported again each grace (so the monitors' copy does not expire), nothing about the others.
        rig.Run(Grace * 2);
        Assert.All(rig.Reports[0].Events, e => Assert.Equal((2, true), e));
        Assert.True(rig.Reports[0].Events.Count >= 3, $"{rig.Reports[0].Events.Count} reports in {3 * Grace.TotalSeconds} s of silence");

        // It answers again (SIGCONT): the next round of pings withdraws each report, once.
        rig.Net.Stopped.Remove(2);
        var before = rig.Reports[0].Events.Count;
        rig.Step();
        Assert.Equal((2, false), rig.Reports[0].Events[^1]);
        Assert.Equal((2, false), rig.Reports[1].Events[^1]);
        Assert.Empty(rig.Net.Osds[0].Reported);
        rig.Run(TimeSpan.FromSeconds(10));
        Assert.Equal(before + 1, rig.Reports[0].Events.Count);
        // The stopped OSD itself, resumed, reports nobody: the silence was its own (its tick came late).
        Assert.Empty(rig.Reports[2].Events);
    }

    [Fact]
    public void A_late_answer_proves_nothing_new_and_a_replayed_one_is_ignored()
    {
        var rig = new Rig(2);
        rig.Run(TimeSpan.FromSeconds(1));
        var hb = rig.Net.Osds[0];
        var oldStamp = rig.Clock.GetTimestamp();
        rig.Net.Stopped.Add(1);
        rig.Run(Grace + Interval + Interval);
        Assert.Equal([(1, true)], rig.Reports[0].Events);

        // An answer to a ping sent before the silence (delayed in the network, or replayed) withdraws nothing.
        hb.Receive(new HeartbeatPacket(HeartbeatKind.Reply, 1, 0, 1, oldStamp));
        Assert.Equal([1], hb.Reported);
        // Nor does one echoing a stamp this OSD never sent (from the future).
        hb.Receive(new HeartbeatPacket(HeartbeatKind.Reply, 1, 0, 1, rig.Clock.GetTimestamp() + TimeSpan.TicksPerSecond));
        Assert.Equal([1], hb.Reported);
        // Nor one addressed to another OSD.
        Assert.Null(hb.Receive(new HeartbeatPacket(HeartbeatKind.Ping, 1, 5, 1, oldStamp)));
    }

    [Fact]
    public void A_pinger_that_did_not_run_for_a_while_reports_nobody_for_it()
    {
        var rig = new Rig(3);
        rig.Run(TimeSpan.FromSeconds(2));
        // osd.0 alone is stopped for 10 s (its peers keep running, and report it), then resumes.
        rig.Net.Stopped.Add(0);
        rig.Run(TimeSpan.FromSeconds(10));
        Assert.Contains((0, true), rig.Reports[1].Events);
        rig.Net.Stopped.Remove(0);
        rig.Run(TimeSpan.FromSeconds(10));
        Assert.Empty(rig.Reports[0].Events);
        Assert.Equal((0, false), rig.Reports[1].Events[^1]);
    }

    [Fact]
    public void Peers_follow_the_set_given_and_a_forgotten_reported_peer_is_withdrawn()
    {
        var rig = new Rig(4);
        var hb = rig.Net.Osds[0];
        hb.SetPeers([1, 2, 0]);
        Assert.Equal([1, 2], hb.Peers.Order());
        rig.Net.Stopped.Add(2);
        rig.Run(Grace + (2 * Interval));
        Assert.Contains((2, true), rig.Reports[0].Events);
        Assert.DoesNotContain(rig.Reports[0].Events, e => e.Osd == 3);

        // osd.2 leaves the peer set (its PGs moved, or it was marked down): the report against it is withdrawn, and
        // a new peer gets a whole grace before it could be reported.
        hb.SetPeers([1, 3]);
        Assert.Equal((2, false), rig.Reports[0].Events[^1]);
        rig.Net.Stopped.Add(3);
        var count = rig.Reports[0].Events.Count;
        rig.Run(Grace - Interval);
        Assert.Equal(count, rig.Reports[0].Events.Count);
        rig.Run(Interval * 3);
        Assert.Equal((3, true), rig.Reports[0].Events[^1]);
    }

    [Fact]
    public async Task The_watchdog_withholds_answers_while_a_store_io_is_outstanding_past_the_grace()
    {
        var clock = new ManualClock();
        var net = new InProcessHeartbeats();
        // A real device that stops completing writes (a latency of an hour in real time, cancelled at the end), under
        // the watchdog that timestamps with the test's clock.
        await using var faulty = new FaultInjectingDevice(new MemoryDevice(1 << 20, 4096));
        var watched = new WatchedDevice(faulty, clock);
        var reports = new RecordedReports();
        var peerReports = new RecordedReports();
        var self = new Heartbeater(0, net, reports, clock, watched.OldestOutstanding, NullLogger.Instance) { Interval = Interval, Grace = Grace };
        var peer = new Heartbeater(1, net, peerReports, clock, () => TimeSpan.Zero, NullLogger.Instance) { Interval = Interval, Grace = Grace };
        net.Osds[0] = self;
        net.Osds[1] = peer;
        self.SetPeers([1]);
        peer.SetPeers([0]);

        void Step()
        {
            clock.Advance(Interval);
            self.Tick();
            peer.Tick();
        }

        using var buffer = new AlignedBuffer(4096, 4096);
        await watched.WriteAsync(0, buffer.Memory);
        Assert.Equal(TimeSpan.Zero, watched.OldestOutstanding());
        faulty.WriteLatency = TimeSpan.FromHours(1);
        using var hang = new CancellationTokenSource();
        var hung = watched.WriteAsync(4096, buffer.Memory, hang.Token).AsTask();

        // Outstanding, but younger than the grace: pings are answered.
        for (var i = 0; i < 4; i++)
        {
            Step();
        }
        Assert.False(hung.IsCompleted);
        Assert.False(self.WatchdogTripped);
        Assert.Empty(peerReports.Events);

        // Past the grace: osd.0 stops answering, and its peer reports it once the grace passes again.
        while (peerReports.Events.Count == 0)
        {
            Step();
            Assert.True(watched.OldestOutstanding() < TimeSpan.FromSeconds(20), "the peer never reported the OSD whose disk hangs");
        }
        Assert.True(self.WatchdogTripped);
        Assert.True(self.PingsWithheld > 0);
        Assert.Equal([(0, true)], peerReports.Events);
        // osd.0 still hears osd.1's answers: it reports nobody.
        Assert.Empty(reports.Events);

        // The I/O completes (here: fails, cancelled): answers resume and the report is withdrawn.
        await hang.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => hung);
        Assert.Equal(TimeSpan.Zero, watched.OldestOutstanding());
        Step();
        Assert.False(self.WatchdogTripped);
        Assert.Equal((0, false), peerReports.Events[^1]);
    }

    [Fact]
    public void Rejoin_backoff_doubles_to_its_cap_and_resets_after_a_stable_period()
    {
        var clock = new ManualClock();
        var backoff = new RejoinBackoff(clock);
        backoff.Up();
        var waits = new List<double>();
        for (var i = 0; i < 7; i++)
        {
            var wait = backoff.MarkedDown();
            waits.Add(wait.TotalSeconds);
            clock.Advance(wait);
            backoff.Up();
            clock.Advance(TimeSpan.FromSeconds(5)); // up briefly, then marked down again: flapping
        }
        Assert.Equal([1, 2, 4, 8, 16, 30, 30], waits);
        clock.Advance(TimeSpan.FromSeconds(60));
        Assert.Equal(TimeSpan.FromSeconds(1), backoff.MarkedDown());
    }
}
