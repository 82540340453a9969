using System.Diagnostics;
using Appliance.Client;

namespace Appliance.Cluster.Tests.Netns;

/// <summary>
/// Issue 18's real-process failure tests, on a <see cref="NetnsCluster"/> (3 monitors and 3 OSDs, each in its own
/// network namespace; pool `data` size 3 min_size 2): the primary of a busy PG SIGKILLed mid stream; every daemon
/// killed and started at once; an OSD away while 64 MiB are written (512 MiB under APPLIANCE_SOAK=1); an OSD whose
/// network is cut from everyone, silently from its peers only (heartbeats), silently from the monitors only
/// (beacons). Each starts from every daemon up and every PG active+clean, and ends there with every acknowledged
/// write read back with its checksum. Victims come from the printed seed (APPLIANCE_SEED).
/// </summary>
[Collection(NetnsFixture.Collection)]
public sealed class NetnsFailureTests(NetnsFixture fixture, ITestOutputHelper output) : IClassFixture<NetnsFixture>
{
    private const string Pool = NetnsCluster.Pool;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan WriteDeadline = TimeSpan.FromSeconds(30);
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    /// <summary>Rounds of the kill and cut tests: several under APPLIANCE_SOAK=1.</summary>
    private static int Rounds => TestSeed.Soak ? 5 : 1;

    private NetnsCluster Cluster => fixture.Cluster;

    [NetnsFact]
    public async Task Primary_of_a_busy_pg_killed_mid_stream_comes_back_and_every_acknowledged_write_reads_back()
    {
        var seed = TestSeed.Get(nameof(Primary_of_a_busy_pg_killed_mid_stream_comes_back_and_every_acknowledged_write_reads_back), output);
        await using var client = await ReadyAsync();
        await using var mon = Cluster.MonitorClient();
        await using var stream = new WriteStream(client.OpenPool(Pool), $"primary-{seed}", seed, streams: 3, WriteDeadline);
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 30, "writes before the kill");

        for (var round = 0; round < Rounds; round++)
        {
            // The busiest PG: the one of a writer's hot object (overwritten every fourth write).
            var map = client.OsdMap!;
            var poolId = map.FindPool(Pool)!.Id;
            var pg = map.ObjectToPg(poolId, $"primary-{seed}-s{round % 3}-hot");
            var victim = map.MapPg(pg).ActingPrimary;
            Log($"round {round}: PG {pg} (writer {round % 3}'s hot object) has primary osd.{victim}");
            await Cluster.KillAsync(NetnsCluster.OsdName(victim));
            await Cluster.WaitMarkedAsync(client, [victim], up: false, Bound);
            var down = Stopwatch.GetTimestamp();
            Log($"osd.{victim} marked down in epoch {client.OsdMap!.Epoch}; {stream.Summary()}");
            await WritesGoOnAsync(stream, down, 30, $"writes with osd.{victim} down");
            Assert.True(client.OsdMap!.MapPg(pg).ActingPrimary != victim, $"PG {pg} still names the dead osd.{victim} its primary");

            Cluster.Start(NetnsCluster.OsdName(victim));
            await Cluster.WaitMarkedAsync(client, [victim], up: true, Bound);
            var back = Stopwatch.GetTimestamp();
            await Cluster.WaitCleanAsync(client, mon, Bound);

            // Reads go to the primary: the objects written while it was away in the PGs it leads again are read from
            // it (fresh objects: no write of them is in flight).
            map = client.OsdMap!;
            var missed = stream.FreshAcknowledged(down, back).Where(n => map.MapPg(map.ObjectToPg(poolId, n)).ActingPrimary == victim).ToList();
            Assert.True(missed.Count > 0, $"no object written while osd.{victim} was down maps to a PG it leads again: the test checks too little");
            var stale = await stream.CheckAsync(missed);
            Assert.True(stale.Count == 0, $"osd.{victim} did not catch up:\n{string.Join("\n", stale.Take(20))}\n{Cluster.Logs()}");
            Log($"read {missed.Count} objects written while osd.{victim} was down from it, their PGs' primary again");
            await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 10, "writes after it came back");
        }
        await stream.StopAsync();
        NoWriteFailed(stream);
        await EveryAcknowledgedWriteReadsBackAsync(stream);
    }

    [NetnsFact]
    public async Task Every_daemon_killed_and_started_at_once_and_everything_reads_back()
    {
        var seed = TestSeed.Get(nameof(Every_daemon_killed_and_started_at_once_and_everything_reads_back), output);
        await using var client = await ReadyAsync();
        await using var mon = Cluster.MonitorClient();
        var io = client.OpenPool(Pool);
        await using var before = new WriteStream(io, $"all-{seed}", seed, streams: 3, WriteDeadline);
        await WritesGoOnAsync(before, Stopwatch.GetTimestamp(), 60, "writes before the restart");
        await before.StopAsync();
        NoWriteFailed(before);

        await Cluster.RestartAllAsync();
        // The same client: it finds the restarted monitors and the OSDs at their new ports.
        await Cluster.WaitCleanAsync(client, mon, TimeSpan.FromSeconds(120));
        await EveryAcknowledgedWriteReadsBackAsync(before);

        await using var after = new WriteStream(io, $"all-after-{seed}", seed + 1, streams: 3, WriteDeadline);
        await WritesGoOnAsync(after, Stopwatch.GetTimestamp(), 30, "writes after the restart");
        await after.StopAsync();
        NoWriteFailed(after);
        await EveryAcknowledgedWriteReadsBackAsync(after);
    }

    [NetnsFact]
    public async Task Osd_away_while_64_mib_are_written_recovers_when_back()
    {
        var seed = TestSeed.Get(nameof(Osd_away_while_64_mib_are_written_recovers_when_back), output);
        var rng = new Random(seed);
        var bytes = TestSeed.Soak ? 512L << 20 : 64L << 20;
        await using var client = await ReadyAsync();
        await using var mon = Cluster.MonitorClient();
        var victim = Cluster.Osds[rng.Next(Cluster.Osds.Count)];
        await Cluster.KillAsync(NetnsCluster.OsdName(victim));
        await Cluster.WaitMarkedAsync(client, [victim], up: false, Bound);
        var down = Stopwatch.GetTimestamp();

        // Objects of 64-256 KiB from 4 writers, until the acknowledged bytes reach the target.
        await using var stream = new WriteStream(client.OpenPool(Pool), $"away-{seed}", seed, streams: 4, WriteDeadline, minBytes: 64 << 10, maxBytes: 256 << 10);
        await Poll.UntilAsync(() => stream.AcknowledgedBytesSince(down) >= bytes, TimeSpan.FromSeconds(TestSeed.Soak ? 900 : 120),
            $"{bytes >> 20} MiB acknowledged with osd.{victim} down", () => stream.Summary() + "\n" + Cluster.Logs());
        await stream.StopAsync();
        Log($"{stream.AcknowledgedBytesSince(down) >> 20} MiB written with osd.{victim} down; {stream.Summary()}");

        Cluster.Start(NetnsCluster.OsdName(victim));
        await Cluster.WaitMarkedAsync(client, [victim], up: true, Bound);
        await Cluster.WaitCleanAsync(client, mon, TimeSpan.FromSeconds(TestSeed.Soak ? 900 : 120));

        var map = client.OsdMap!;
        var poolId = map.FindPool(Pool)!.Id;
        var led = stream.FreshAcknowledged(down, Stopwatch.GetTimestamp()).Count(n => map.MapPg(map.ObjectToPg(poolId, n)).ActingPrimary == victim);
        Assert.True(led > 0, $"no object written while osd.{victim} was away maps to a PG it leads again: the test checks too little");
        Log($"{led} of the objects written while it was away are read from osd.{victim}, their PG's primary again");
        NoWriteFailed(stream);
        await EveryAcknowledgedWriteReadsBackAsync(stream);
    }

    /// <summary>
    /// An OSD cut off from monitors, peers and clients by a cut that refuses connections: the OSDs that replicate to it
    /// find their connections reset and report it at once, and the monitors mark it down although its process runs.
    /// Healed, the same process learns it was marked down and boots again.
    /// </summary>
    [NetnsFact]
    public Task Osd_cut_off_from_monitors_and_peers_is_marked_down_writes_go_on_and_it_rejoins_when_healed() =>
        CutTestAsync(nameof(Osd_cut_off_from_monitors_and_peers_is_marked_down_writes_go_on_and_it_rejoins_when_healed),
            "cut", osd => Cluster.IsolateAsync(NetnsCluster.OsdName(osd)), "everyone", "through its peers' refused connections", 30);

    /// <summary>
    /// An OSD silently cut off from its peers (every packet dropped, heartbeats too) but not from the monitors nor the
    /// clients: nothing refuses a connection, so only heartbeats can tell. Its peers report it and the monitors mark it
    /// down while its process runs; it still reaches the monitors, so it learns that and boots again (after its
    /// backoff), and is marked down again by its peers: writes stall at most for a grace each time, none fails, and no
    /// acknowledged write is lost. Healed, it stays up and its PGs recover.
    /// </summary>
    [NetnsFact]
    public Task Osd_silently_cut_from_its_peers_only_is_marked_down_by_heartbeats_and_no_acknowledged_write_is_lost() =>
        CutTestAsync(nameof(Osd_silently_cut_from_its_peers_only_is_marked_down_by_heartbeats_and_no_acknowledged_write_is_lost),
            "peercut", osd => Cluster.CutFromPeersAsync(osd, silent: true), "its peers", "by its peers' heartbeat reports", 60);

    /// <summary>
    /// An OSD silently cut off from the monitors but not from its peers nor the clients: its peers hear its
    /// heartbeats and report nothing, so its beacons stopping is what marks it down (mon_osd_report_timeout). It may
    /// go on serving with its old map meanwhile; its peers, on the newer map, refuse its replication, so nothing it
    /// acknowledges can be lost. Healed, it learns it was marked down, boots again, and its PGs recover.
    /// </summary>
    [NetnsFact]
    public Task Osd_silently_cut_from_the_monitors_only_is_marked_down_by_missing_beacons_and_no_acknowledged_write_is_lost() =>
        CutTestAsync(nameof(Osd_silently_cut_from_the_monitors_only_is_marked_down_by_missing_beacons_and_no_acknowledged_write_is_lost),
            "moncut", osd => Cluster.CutFromMonitorsAsync(NetnsCluster.OsdName(osd), silent: true), "the monitors", "for missing beacons", 30);

    /// <summary>Rounds (several under APPLIANCE_SOAK=1) of one OSD, chosen from the seed, cut off by
    /// <paramref name="cut"/> under a write stream: marked down while its process runs, <paramref name="writesAfter"/>
    /// writes acknowledged and 20 reads verified meanwhile; healed, it is up again (the same process) and every PG
    /// active+clean. At the end no write failed and every acknowledged write reads back.</summary>
    private async Task CutTestAsync(string test, string prefix, Func<int, Task> cut, string from, string foundBy, int writesAfter)
    {
        var seed = TestSeed.Get(test, output);
        var rng = new Random(seed);
        await using var client = await ReadyAsync();
        await using var mon = Cluster.MonitorClient();
        await using var stream = new WriteStream(client.OpenPool(Pool), $"{prefix}-{seed}", seed, streams: 3, WriteDeadline);
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 30, "writes before the cut");

        for (var round = 0; round < Rounds; round++)
        {
            var victim = Cluster.Osds[rng.Next(Cluster.Osds.Count)];
            var name = NetnsCluster.OsdName(victim);
            var pid = Cluster.Pid(name);
            await cut(victim);
            await Cluster.WaitMarkedAsync(client, [victim], up: false, Bound);
            var down = Stopwatch.GetTimestamp();
            Assert.True(Cluster.IsRunning(name), $"{name} (pid {pid}) exited while cut off from {from}:\n{Cluster.Logs()}");
            Log($"round {round}: osd.{victim} marked down {foundBy} in epoch {client.OsdMap!.Epoch} while its process runs; {stream.Summary()}");

            stream.VerifyReads = true;
            var verified = stream.VerifiedReads;
            await WritesGoOnAsync(stream, down, writesAfter, $"writes with osd.{victim} cut from {from}");
            await Poll.UntilAsync(() => stream.VerifiedReads >= verified + 20, Bound, $"20 reads verified with osd.{victim} cut from {from}", Detail(stream));
            stream.VerifyReads = false;
            Assert.True(stream.ReadProblems.Count == 0, $"reads with osd.{victim} cut from {from}:\n{string.Join("\n", stream.ReadProblems)}");

            // Healed, the same process learns it was marked down and boots again; its PGs recover.
            await Cluster.HealAsync(name);
            await Cluster.WaitMarkedAsync(client, [victim], up: true, Bound);
            Assert.True(Cluster.IsRunning(name), $"{name} (pid {pid}) exited after the heal:\n{Cluster.Logs()}");
            await Cluster.WaitCleanAsync(client, mon, Bound);
            await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 10, "writes after the heal");
        }
        await stream.StopAsync();
        NoWriteFailed(stream);
        await EveryAcknowledgedWriteReadsBackAsync(stream);
    }

    /// <summary>
    /// The leader monitor cut off from everyone (connections refused): the other two elect a leader among themselves,
    /// which marks down an OSD killed meanwhile (its peers' reports reach it), and writes go on; healed, the old leader
    /// rejoins and catches up with the osdmap. Needs no OSD heartbeats: monitors watch each other.
    /// </summary>
    [NetnsFact]
    public async Task Leader_monitor_cut_off_the_others_lead_mark_a_killed_osd_down_and_it_rejoins_when_healed()
    {
        var seed = TestSeed.Get(nameof(Leader_monitor_cut_off_the_others_lead_mark_a_killed_osd_down_and_it_rejoins_when_healed), output);
        var rng = new Random(seed);
        await using var client = await ReadyAsync();
        await using var mon = Cluster.MonitorClient();
        await using var stream = new WriteStream(client.OpenPool(Pool), $"mon-{seed}", seed, streams: 3, WriteDeadline);
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 30, "writes before the cut");

        var leader = await Cluster.WaitLeaderAsync(NetnsCluster.Monitors, Bound);
        await Cluster.IsolateAsync(leader);
        var others = NetnsCluster.Monitors.Where(m => m != leader).ToList();
        var next = await Cluster.WaitLeaderAsync(others, Bound);
        Log($"{leader} cut off; {next} leads {string.Join(" and ", others)}");

        var victim = Cluster.Osds[rng.Next(Cluster.Osds.Count)];
        await Cluster.KillAsync(NetnsCluster.OsdName(victim));
        await Cluster.WaitMarkedAsync(client, [victim], up: false, Bound);
        var down = Stopwatch.GetTimestamp();
        var epoch = client.OsdMap!.Epoch;
        Log($"osd.{victim} marked down in epoch {epoch} with {leader} cut off");
        await WritesGoOnAsync(stream, down, 30, $"writes with {leader} cut off and osd.{victim} down");

        await Cluster.HealAsync(leader);
        Cluster.Start(NetnsCluster.OsdName(victim));
        await Cluster.WaitMarkedAsync(client, [victim], up: true, Bound);
        await Cluster.WaitCleanAsync(client, mon, Bound);
        // The old leader is back in the quorum and has the maps made without it.
        (string Role, string? Leader, uint Epoch)? view = null;
        await Poll.UntilAsync(async () => (view = await Cluster.MonitorStatusAsync(leader)) is { } v && v.Leader is not null && v.Epoch >= epoch,
            Bound, $"{leader} to rejoin with osdmap epoch {epoch} or later", () => $"{leader}: {view}\n{Cluster.Logs()}");
        Log($"{leader} rejoined: {view!.Value.Role}, leader {view.Value.Leader}, osdmap epoch {view.Value.Epoch}");
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 10, "writes after the heal");
        await stream.StopAsync();
        NoWriteFailed(stream);
        await EveryAcknowledgedWriteReadsBackAsync(stream);
    }

    /// <summary>The harness's cuts block exactly the links they name, both ways (TCP connects to the daemons' listening
    /// ports from every namespace and from the test process): refused for a cut that resets, unanswered for a silent
    /// one, and everything connects again once healed.</summary>
    [NetnsFact]
    public async Task Partitions_cut_exactly_the_links_they_name()
    {
        await using var client = await ReadyAsync();
        var map = client.OsdMap!;
        var listening = Cluster.Daemons.ToDictionary(d => d, d => d.StartsWith("osd.", StringComparison.Ordinal)
            ? System.Net.IPEndPoint.Parse(map.FindOsd(int.Parse(d[4..], System.Globalization.CultureInfo.InvariantCulture))!.Address)
            : new System.Net.IPEndPoint(Cluster.Address(d), NetnsCluster.MonitorPort));
        var osd = Cluster.Osds[^1];
        var victim = NetnsCluster.OsdName(osd);
        var peers = Cluster.Osds.Where(o => o != osd).Select(NetnsCluster.OsdName).ToList();
        string[] everyone = [.. Cluster.Daemons.Where(d => d != victim), "host"];

        // Every probe at once: a silent cut makes each wait its whole 2 s.
        async Task ExpectAsync(string cut, Func<string, bool> severed, string severedAs)
        {
            var probes = everyone.Select(o => (From: o, To: victim))
                .Concat(everyone.Where(o => o != "host").Select(o => (From: victim, To: o)))
                .Select(async p => (p.From, p.To, Want: severed(p.From == victim ? p.To : p.From) ? severedAs : "connected",
                    Got: await Cluster.ProbeAsync(p.From, listening[p.To])))
                .ToList();
            var wrong = (await Task.WhenAll(probes)).Where(p => p.Want != p.Got).ToList();
            Assert.True(wrong.Count == 0, $"{cut}: {string.Join("; ", wrong.Select(p => $"{p.From} → {p.To}: {p.Got}, expected {p.Want}"))}");
            Log($"{cut}: as expected ({probes.Count} connects)");
        }

        await ExpectAsync("no cut", _ => false, "");
        await Cluster.CutFromPeersAsync(osd);
        await ExpectAsync("cut from peers", peers.Contains, "refused");
        await Cluster.CutFromMonitorsAsync(victim);
        await ExpectAsync("cut from monitors", NetnsCluster.Monitors.Contains, "refused");
        await Cluster.IsolateAsync(victim, silent: true);
        await ExpectAsync("isolated silently", _ => true, "timeout");
        await Cluster.HealAsync(victim);
        await ExpectAsync("healed", _ => false, "");
    }

    /// <summary>SIGSTOP and SIGCONT reach the daemon by its pid: stopped, its kernel still completes TCP handshakes (why
    /// only heartbeats can tell it is hung); continued, it serves again.</summary>
    [NetnsFact]
    public async Task Sigstop_freezes_a_daemon_and_sigcont_resumes_it()
    {
        var seed = TestSeed.Get(nameof(Sigstop_freezes_a_daemon_and_sigcont_resumes_it), output);
        await using var client = await ReadyAsync();
        var osd = Cluster.Osds[0];
        var name = NetnsCluster.OsdName(osd);
        var address = System.Net.IPEndPoint.Parse(client.OsdMap!.FindOsd(osd)!.Address);
        Cluster.Signal(name, Appliance.Platform.Native.Posix.SIGSTOP);
        try
        {
            await Poll.UntilAsync(() => Cluster.State(name) == 'T', Bound, $"{name} to be stopped");
            Assert.Equal("connected", await Cluster.ProbeAsync("host", address));
        }
        finally
        {
            Cluster.Signal(name, Appliance.Platform.Native.Posix.SIGCONT);
        }
        await Poll.UntilAsync(() => Cluster.State(name) is not 'T' and not '-', Bound, $"{name} to run again");
        await using var stream = new WriteStream(client.OpenPool(Pool), $"sigstop-{seed}", seed, streams: 3, WriteDeadline);
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 40, $"writes after {name} continued");
        await stream.StopAsync();
        NoWriteFailed(stream);
        await EveryAcknowledgedWriteReadsBackAsync(stream);
    }

    /// <summary>Every daemon running, no cut, every PG active+clean; a client of the test process.</summary>
    private async Task<ClusterClient> ReadyAsync()
    {
        Flush();
        // Whatever an earlier test left (it may have failed half-way): no cut, nothing stopped, everything running.
        await Cluster.HealAllAsync();
        Cluster.ContinueAll();
        Cluster.StartAll();
        var client = await Cluster.ConnectAsync(WriteDeadline);
        await using var mon = Cluster.MonitorClient();
        await Cluster.WaitCleanAsync(client, mon, TimeSpan.FromSeconds(90));
        Flush();
        return client;
    }

    private void NoWriteFailed(WriteStream stream)
    {
        // One OSD away at most: every PG keeps min_size members, so no write may fail, however it straddled the fault.
        var failed = stream.Outcomes.Where(o => !o.Acknowledged).ToList();
        Assert.True(failed.Count == 0, $"{failed.Count} writes failed:\n{string.Join("\n", failed.Take(5).Select(f => $"{f.Name}: {f.Error!.GetType().Name}: {f.Error.Message}"))}\n{Cluster.Logs(60)}");
    }

    private async Task EveryAcknowledgedWriteReadsBackAsync(WriteStream stream)
    {
        var (count, problems) = await stream.CheckEverythingAsync();
        Log($"read back {count} objects; {stream.Summary()}");
        Assert.True(problems.Count == 0, $"{problems.Count} of {count} objects did not read back as acknowledged:\n{string.Join("\n", problems.Take(20))}\n{Cluster.Logs()}");
        Assert.True(count >= 20, $"only {count} objects were acknowledged: the test checked too little");
    }

    private async Task WritesGoOnAsync(WriteStream stream, long since, int count, string what)
    {
        await Poll.UntilAsync(() => stream.AcknowledgedSince(since) >= count, Bound, $"{count} {what}", Detail(stream));
        Log($"{count} {what} acknowledged");
    }

    private Func<string> Detail(WriteStream stream) => () => stream.Summary() + "\n" + Cluster.Logs();

    private void Flush()
    {
        foreach (var line in fixture.Drain())
        {
            output.WriteLine(line);
        }
    }

    private void Log(string line)
    {
        Flush();
        output.WriteLine($"{_clock.Elapsed.TotalSeconds,7:0.000} {line}");
    }
}
