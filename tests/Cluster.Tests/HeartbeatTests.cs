using System.Collections.Concurrent;
using System.Diagnostics;
using Appliance.Client;
using Appliance.Maps.Client;
using Appliance.Platform.Native;

namespace Appliance.Cluster.Tests;

/// <summary>The local cluster of <see cref="HeartbeatTests"/>: disks of 1 GiB (sparse), so a busy write stream never
/// fills them.</summary>
public sealed class HeartbeatCluster : LocalCluster
{
    protected override string DiskSize => "1G";
}

/// <summary>
/// Issue 18's heartbeats with real processes (`cluster up`: 3 monitors, 3 OSDs, pool `data` size 3 min_size 2). An
/// OSD stopped with SIGSTOP (it holds its connections open, so only heartbeats can tell) is marked down by its peers'
/// reports and writes go on; continued with SIGCONT, it finds itself marked down, boots again and every PG is
/// active+clean. A cluster busy with 16 writes in flight for 20 s marks no healthy OSD down. Every stopped OSD is
/// continued in a finally.
/// </summary>
public sealed class HeartbeatTests(HeartbeatCluster cluster, ITestOutputHelper output) : IClassFixture<HeartbeatCluster>
{
    private const string Pool = "data";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    /// <summary>How long a stopped OSD may take to be marked down here: well under the 20 s grace of before (Ceph's
    /// default, which on one host never marks it down at all), with room for a loaded machine. The figure itself is
    /// the bench's (cluster-failover).</summary>
    private static readonly TimeSpan DownBound = TimeSpan.FromSeconds(12);
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    [Fact]
    public async Task A_stopped_osd_is_marked_down_writes_go_on_and_it_comes_back_when_continued()
    {
        var seed = TestSeed.Get(nameof(A_stopped_osd_is_marked_down_writes_go_on_and_it_comes_back_when_continued), output);
        var victim = new Random(seed).Next(3);
        await cluster.UpAsync();
        await using var client = await cluster.ConnectAsync(TimeSpan.FromSeconds(30));
        await using var mon = cluster.Monitors();
        await WaitCleanAsync(client, mon);
        await using var stream = new WriteStream(client.OpenPool(Pool), $"stop-{seed}", seed, streams: 3, TimeSpan.FromSeconds(30));
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 20, "writes before the stop");
        var upFrom = client.OsdMap!.FindOsd(victim)!.UpFrom;

        var pid = 0;
        try
        {
            pid = cluster.SignalOsd(victim, Posix.SIGSTOP);
            var stopped = Stopwatch.GetTimestamp();
            Log($"SIGSTOP osd.{victim} (pid {pid}); {stream.Summary()}");
            await Poll.UntilAsync(() => client.OsdMap!.FindOsd(victim) is { Up: false }, DownBound,
                $"the monitors to mark the stopped osd.{victim} down", () => cluster.Logs());
            var down = Stopwatch.GetTimestamp();
            Log($"osd.{victim} marked down in epoch {client.OsdMap!.Epoch}, {Stopwatch.GetElapsedTime(stopped, down).TotalSeconds:0.0} s after SIGSTOP");
            // Writes go on while it stays stopped (only those started after the mark-down are counted).
            await WritesGoOnAsync(stream, down, 20, $"writes with osd.{victim} stopped");
            Log($"20 writes after the mark-down done {Stopwatch.GetElapsedTime(stopped).TotalSeconds:0.0} s after SIGSTOP");
            Assert.True(cluster.IsRunning(victim), $"osd.{victim} died while stopped");
        }
        finally
        {
            if (pid != 0)
            {
                Posix.kill(pid, Posix.SIGCONT);
            }
        }
        Log($"SIGCONT osd.{victim}");

        // Continued: it learns from the next map that it is down and boots again (after its backoff), up from a later
        // epoch; its PGs peer again and every one is active+clean.
        await Poll.UntilAsync(() => client.OsdMap!.FindOsd(victim) is { Up: true } o && o.UpFrom > upFrom, Bound,
            $"osd.{victim} to boot again after SIGCONT", () => cluster.Logs());
        Log($"osd.{victim} up again from epoch {client.OsdMap!.FindOsd(victim)!.UpFrom}");
        await WaitCleanAsync(client, mon);
        await WritesGoOnAsync(stream, Stopwatch.GetTimestamp(), 10, "writes with every OSD back");

        await stream.StopAsync();
        // With one OSD stopped every PG kept min_size members: no write may fail, however it straddled the stop.
        var failed = stream.FailedSince(0);
        Assert.True(failed.Count == 0, $"{failed.Count} writes failed:\n{string.Join("\n", failed.Take(5).Select(f => f.Error!.Message))}");
        var (count, problems) = await stream.CheckEverythingAsync();
        Log($"checked {count} objects; {stream.Summary()}");
        Assert.True(problems.Count == 0, $"{problems.Count} of {count} objects did not read back as acknowledged:\n{string.Join("\n", problems.Take(20))}");
        Assert.True(count >= 40, $"only {count} objects were acknowledged: the test checked too little");
    }

    [Fact]
    public async Task A_busy_cluster_marks_no_healthy_osd_down()
    {
        var seed = TestSeed.Get(nameof(A_busy_cluster_marks_no_healthy_osd_down), output);
        await cluster.UpAsync();
        await using var client = await cluster.ConnectAsync(TimeSpan.FromSeconds(30));
        await using var mon = cluster.Monitors();
        await WaitCleanAsync(client, mon);
        var first = client.OsdMap!;
        Assert.Equal(3, first.UpCount);

        // Every map the client sees during the load is checked for a down OSD (a short one would also show in up_from
        // at the end: an OSD marked down and back up is up from a later epoch).
        var downs = new ConcurrentQueue<string>();
        using var stopWatching = new CancellationTokenSource();
        var watcher = Task.Run(async () =>
        {
            uint seen = 0;
            while (!stopWatching.IsCancellationRequested)
            {
                if (client.OsdMap is { } m && m.Epoch != seen)
                {
                    seen = m.Epoch;
                    foreach (var o in m.Osds.Values.Where(o => !o.Up))
                    {
                        downs.Enqueue($"osd.{o.Id} down in epoch {m.Epoch}");
                    }
                }
                await Task.Delay(5);
            }
        });
        var start = Stopwatch.GetTimestamp();
        var load = TimeSpan.FromSeconds(20);
        await using (var stream = new WriteStream(client.OpenPool(Pool), $"busy-{seed}", seed, streams: 16, TimeSpan.FromSeconds(30)))
        {
            // The load's length is the experiment, not a wait for a condition.
            await Task.Delay(load);
            await stream.StopAsync();
            Log($"{Stopwatch.GetElapsedTime(start).TotalSeconds:0.0} s of 16 writers: {stream.Summary()}; load {File.ReadAllText("/proc/loadavg").Trim()}");
            Assert.True(stream.AcknowledgedSince(start) >= 100, $"only {stream.AcknowledgedSince(start)} writes in {load.TotalSeconds} s: the cluster was not busy");
            Assert.True(stream.FailedSince(start).Count == 0, $"writes failed: {stream.Summary()}");
        }
        await stopWatching.CancelAsync();
        await watcher;

        var last = client.OsdMap!;
        Log($"osdmap epoch {first.Epoch} before the load, {last.Epoch} after");
        Assert.True(downs.IsEmpty, $"healthy OSDs were marked down under load: {string.Join("; ", downs)}\n{cluster.Logs()}");
        foreach (var osd in first.Osds.Values)
        {
            var now = last.FindOsd(osd.Id)!;
            Assert.True(now.Up && now.UpFrom == osd.UpFrom, $"osd.{osd.Id} up {now.Up} from epoch {now.UpFrom} (was up from {osd.UpFrom}): it was marked down under load\n{cluster.Logs()}");
        }
    }

    private async Task WritesGoOnAsync(WriteStream stream, long since, int count, string what)
    {
        await Poll.UntilAsync(() => stream.AcknowledgedSince(since) >= count, Bound, $"{count} {what}", () => stream.Summary() + "\n" + cluster.Logs());
        Log($"{count} {what} acknowledged");
    }

    private Task WaitCleanAsync(ClusterClient client, MonClient mon) => cluster.WaitCleanAsync(client, mon, Pool, Bound, Log);

    private void Log(string line) => output.WriteLine($"{_clock.Elapsed.TotalSeconds,7:0.000} {line}");
}
