using System.Diagnostics;
using Appliance.Client;
using Appliance.Maps.Client;

namespace Appliance.Cluster.Tests;

/// <summary>
/// Issue 17's failure tests with real processes: OSDs of a local cluster (`cluster up`: 3 OSDs, pool `data` size 3
/// min_size 2) killed with SIGKILL under a stream of writes through the real cluster client. One killed: once the
/// monitors mark it down writes go on and reads return the newest acknowledged data; restarted, it catches up and
/// every PG is active+clean again. Two killed: writes wait (their PGs are below min_size), fail past their deadline
/// with a timeout naming the PG, and go on when one returns. At the end every acknowledged write reads back with its
/// checksum. One cluster serves both tests; each starts by bringing it to all up and active+clean. The victims come
/// from the printed seed (APPLIANCE_SEED); APPLIANCE_SOAK=1 runs several rounds of each.
/// </summary>
public sealed class OsdKillTests(LocalCluster cluster, ITestOutputHelper output) : IClassFixture<LocalCluster>
{
    private const string Pool = "data";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private static int Rounds => TestSeed.Soak ? 5 : 1;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    [Fact]
    public async Task One_osd_killed_writes_go_on_reads_are_newest_and_it_catches_up_when_restarted()
    {
        var seed = TestSeed.Get(nameof(One_osd_killed_writes_go_on_reads_are_newest_and_it_catches_up_when_restarted), output);
        var rng = new Random(seed);
        await cluster.UpAsync();
        await using var client = await cluster.ConnectAsync(TimeSpan.FromSeconds(30));
        await using var mon = cluster.Monitors();
        await WaitCleanAsync(client, mon);
        await using var stream = new WriteStream(client.OpenPool(Pool), $"one-{seed}", seed, streams: 3, TimeSpan.FromSeconds(30));
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 20, "writes before any kill");

        for (var round = 0; round < Rounds; round++)
        {
            var victim = rng.Next(3);
            var pid = await cluster.KillOsdAsync(victim);
            Log($"round {round}: killed osd.{victim} (pid {pid}); {stream.Summary()}");
            await WaitMarkedAsync(client, [victim], up: false);
            var down = Stopwatch.GetTimestamp();
            Log($"osd.{victim} marked down in epoch {client.OsdMap!.Epoch}");

            // Writes go on (only those started after the mark-down are counted), and a read after each write of a
            // writer returns exactly what it last had acknowledged.
            stream.VerifyReads = true;
            var verified = stream.VerifiedReads;
            await WritesGoOnAsync(stream, down, 30, $"writes with osd.{victim} down");
            await Poll.UntilAsync(() => stream.VerifiedReads >= verified + 20, Bound, $"20 reads verified with osd.{victim} down", Detail(stream));
            stream.VerifyReads = false;
            Assert.True(stream.ReadProblems.Count == 0, $"reads with osd.{victim} down:\n{string.Join("\n", stream.ReadProblems)}");

            // Restarted by `cluster up` (it starts what is not running): it catches up, every PG active+clean.
            var up = await cluster.UpAsync();
            Log($"cluster up: {up.Trim().Replace('\n', ';')}");
            Assert.Contains($"osd.{victim} started (pid", up);
            await WaitMarkedAsync(client, [victim], up: true);
            var backUp = Stopwatch.GetTimestamp();
            Log($"osd.{victim} back up in epoch {client.OsdMap!.Epoch}");
            await WaitCleanAsync(client, mon);

            // Caught up: the objects written while it was down in the PGs it is the primary of again are read from
            // it (reads go to the primary only).
            var map = client.OsdMap!;
            var poolId = map.FindPool(Pool)!.Id;
            var missed = stream.FreshAcknowledged(down, backUp).Where(n => map.MapPg(map.ObjectToPg(poolId, n)).ActingPrimary == victim).ToList();
            Assert.True(missed.Count > 0, $"no object written while osd.{victim} was down maps to a PG it is the primary of: the test checks too little");
            var stale = await stream.CheckAsync(missed);
            Assert.True(stale.Count == 0, $"osd.{victim} did not catch up:\n{string.Join("\n", stale.Take(20))}\n{cluster.Logs()}");
            Log($"read {missed.Count} objects written while osd.{victim} was down from it, as its PGs' primary");
            await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 10, $"writes after osd.{victim} came back");
        }

        await stream.StopAsync();
        // With one OSD down the PGs keep min_size members: no write may fail, however it straddled the kill.
        var failed = stream.FailedSince(0);
        Assert.True(failed.Count == 0, $"{failed.Count} writes failed:\n{string.Join("\n", failed.Take(5).Select(f => f.Error!.Message))}");
        await EveryAcknowledgedWriteReadsBackAsync(stream);
    }

    [Fact]
    public async Task Two_osds_killed_writes_wait_and_fail_naming_the_pg_and_go_on_when_one_returns()
    {
        var seed = TestSeed.Get(nameof(Two_osds_killed_writes_wait_and_fail_naming_the_pg_and_go_on_when_one_returns), output);
        var rng = new Random(seed);
        var deadline = TimeSpan.FromSeconds(4);
        await cluster.UpAsync();
        // The client's deadline (reads included) is short, so that held writes fail within the test.
        await using var client = await cluster.ConnectAsync(deadline);
        await using var mon = cluster.Monitors();
        await WaitCleanAsync(client, mon);
        var io = client.OpenPool(Pool);
        await using var stream = new WriteStream(io, $"two-{seed}", seed, streams: 3, deadline);
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 20, "writes before any kill");

        for (var round = 0; round < Rounds; round++)
        {
            var survivor = rng.Next(3);
            var victims = Enumerable.Range(0, 3).Where(o => o != survivor).OrderBy(_ => rng.Next()).ToArray();
            foreach (var victim in victims)
            {
                var pid = await cluster.KillOsdAsync(victim);
                Log($"round {round}: killed osd.{victim} (pid {pid})");
            }
            await WaitMarkedAsync(client, victims, up: false);
            var held = Stopwatch.GetTimestamp();
            var map = client.OsdMap!;
            Log($"osd.{victims[0]} and osd.{victims[1]} marked down in epoch {map.Epoch}; {stream.Summary()}");

            // Every PG has one member of min_size 2: writes are held, then fail past their deadline naming their PG.
            await Poll.UntilAsync(() => stream.FailedSince(held).Count >= 3, Bound, "3 writes to fail past their deadline", Detail(stream));
            Assert.Equal(0, stream.AcknowledgedSince(held));
            var pool = map.FindPool(Pool)!;
            foreach (var f in stream.FailedSince(held))
            {
                var e = Assert.IsType<OsdRequestTimeoutException>(f.Error);
                var pg = map.ObjectToPg(pool.Id, f.Name);
                Assert.Equal(pg, e.Pg);
                Assert.Contains($"PG {pg}", e.Message);
                Assert.Contains("of its pool's min_size 2 OSDs up", e.Message);
                Assert.True(Stopwatch.GetElapsedTime(f.Started, f.Ended) >= deadline - TimeSpan.FromMilliseconds(100),
                    $"'{f.Name}' failed after {Stopwatch.GetElapsedTime(f.Started, f.Ended).TotalSeconds:0.###} s, before its deadline: {e.Message}");
            }
            Log($"held: {stream.FailedSince(held)[0].Error!.Message}");

            // One returns: its PGs have min_size members again, and writes go on.
            var back = victims[0];
            Log($"osd.{back} started (pid {cluster.StartOsd(back)})");
            await WaitMarkedAsync(client, [back], up: true);
            var resumed = Stopwatch.GetTimestamp();
            Log($"osd.{back} up in epoch {client.OsdMap!.Epoch}");
            stream.VerifyReads = true;
            var verified = stream.VerifiedReads;
            await WritesGoOnAsync(stream, resumed, 30, $"writes with osd.{back} back and osd.{victims[1]} down");
            await Poll.UntilAsync(() => stream.VerifiedReads >= verified + 20, Bound, "20 reads verified with one OSD back", Detail(stream));
            Log($"20 reads verified; {stream.Summary()}");
            stream.VerifyReads = false;

            // The other one too (`cluster up` starts it): every PG active+clean again.
            Log($"cluster up: {(await cluster.UpAsync()).Trim().Replace('\n', ';')}");
            await WaitMarkedAsync(client, victims, up: true);
            await WaitCleanAsync(client, mon);
            await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 10, "writes with every OSD back");
        }

        await stream.StopAsync();
        // A failed write is always a timeout (no other error may come of OSDs going away and coming back); reads
        // while one was back may have timed out while the PG peered, but none returned anything else.
        Assert.All(stream.Outcomes.Where(o => !o.Acknowledged), o => Assert.IsType<OsdRequestTimeoutException>(o.Error));
        var wrong = stream.ReadProblems.Where(p => !p.Contains(nameof(OsdRequestTimeoutException), StringComparison.Ordinal)).ToList();
        Assert.True(wrong.Count == 0, $"reads:\n{string.Join("\n", wrong)}");
        await EveryAcknowledgedWriteReadsBackAsync(stream);
    }

    private async Task EveryAcknowledgedWriteReadsBackAsync(WriteStream stream)
    {
        var (count, problems) = await stream.CheckEverythingAsync();
        Log($"checked {count} objects; {stream.Summary()}");
        Assert.True(problems.Count == 0, $"{problems.Count} of {count} objects did not read back as acknowledged:\n{string.Join("\n", problems.Take(20))}\n{cluster.Logs()}");
        Assert.True(count >= 40, $"only {count} objects were acknowledged: the test checked too little");
    }

    private async Task WritesGoOnAsync(WriteStream stream, long since, int count, string what)
    {
        await Poll.UntilAsync(() => stream.AcknowledgedSince(since) >= count, Bound, $"{count} {what}", Detail(stream));
        Log($"{count} {what} acknowledged");
    }

    /// <summary>Until the monitors' osdmap (the client's subscription) shows <paramref name="osds"/> up or down.</summary>
    private async Task WaitMarkedAsync(ClusterClient client, int[] osds, bool up)
    {
        await Poll.UntilAsync(() => client.OsdMap is { } m && osds.All(o => m.FindOsd(o)?.Up == up), Bound,
            $"the monitors to mark osd.{string.Join(", osd.", osds)} {(up ? "up" : "down")}", () => cluster.Logs());
    }

    private Task WaitCleanAsync(ClusterClient client, MonClient mon) => cluster.WaitCleanAsync(client, mon, Pool, Bound, Log);

    private Func<string> Detail(WriteStream stream) => () => stream.Summary() + "\n" + cluster.Logs();

    private void Log(string line) => output.WriteLine($"{_clock.Elapsed.TotalSeconds,7:0.000} {line}");
}
