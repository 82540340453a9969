using System.Diagnostics;
using System.Globalization;
using Appliance.Monitor.CrashWriter;
using Appliance.Monitor.Storage;
using Xunit.Abstractions;

namespace Appliance.Monitor.Tests.Storage;

/// <summary>
/// A real writer process (Monitor.CrashWriter) applying batches with group commit and frequent compactions,
/// acknowledging each durable batch on stdout, killed with SIGKILL at random moments. After each kill the store
/// opens, holds every acknowledged batch and equals the model of exactly the prefix of the workload it holds (no
/// partial batch). Then the writer continues from there and is killed again.
/// </summary>
public class KillTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Writer_killed_with_sigkill_loses_no_acknowledged_batch_and_leaves_no_partial_one()
    {
        var seed = TestSupport.Seed(output, nameof(Writer_killed_with_sigkill_loses_no_acknowledged_batch_and_leaves_no_partial_one));
        var rng = new Random(seed);
        using var dir = new TempDir();
        var storeDir = dir.File("mon");
        var writer = typeof(Workload).Assembly.Location;
        var kills = TestSupport.Soak ? 200 : 24;
        long held = 0, totalAcked = 0, compactionsSeen = 0, tornTails = 0;
        for (var kill = 0; kill < kills; kill++)
        {
            var acked = 0L;
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var errors = new List<string>();
            var psi = new ProcessStartInfo("dotnet", [writer, storeDir, seed.ToString(CultureInfo.InvariantCulture), "8", (16 << 10).ToString(CultureInfo.InvariantCulture)])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            using var proc = Process.Start(psi)!;
            proc.OutputDataReceived += (_, e) =>
            {
                if (e.Data is null)
                {
                    return;
                }
                lock (errors)
                {
                    if (e.Data.StartsWith("ACK ", StringComparison.Ordinal))
                    {
                        acked = Math.Max(acked, long.Parse(e.Data[4..], CultureInfo.InvariantCulture));
                    }
                    else if (e.Data.StartsWith("START", StringComparison.Ordinal))
                    {
                        started.TrySetResult();
                    }
                    else
                    {
                        errors.Add(e.Data);
                    }
                }
            };
            proc.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (errors)
                    {
                        errors.Add(e.Data);
                    }
                }
            };
            proc.BeginOutputReadLine();
            proc.BeginErrorReadLine();
            try
            {
                await started.Task.WaitAsync(TimeSpan.FromSeconds(60));
            }
            catch (TimeoutException)
            {
                proc.Kill();
                throw new Xunit.Sdk.XunitException($"seed {seed} kill {kill}: the writer did not start: {string.Join("\n", errors)}");
            }
            if (kill == 0)
            {
                // While the writer runs, this process is refused with a clear error.
                var locked = Assert.Throws<MonitorStoreLockedException>(() => MonitorStore.Open(storeDir));
                Assert.Contains($"pid {proc.Id}", locked.Message, StringComparison.Ordinal);
            }
            await Task.Delay(rng.Next(10, 300));
            proc.Kill(); // SIGKILL: no cleanup, no final compaction
            await proc.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            long ackedNow;
            lock (errors)
            {
                ackedNow = acked;
                Assert.True(errors.Count == 0, $"seed {seed} kill {kill}: writer said: {string.Join("\n", errors)}");
            }
            held = Math.Max(held, ackedNow);
            totalAcked += ackedNow;

            using var store = MonitorStore.Open(storeDir);
            var marker = Workload.Marker(store);
            var context = $"seed {seed} kill {kill}";
            Assert.True(marker >= held, $"{context}: store holds batch {marker} but {held} was acknowledged");
            StoreTestKit.AssertHolds(store, seed, marker, context);
            var stats = store.Stats;
            compactionsSeen += stats.SnapshotSequence > 0 ? 1 : 0;
            tornTails += store.OpenNotes.Count(n => n.Contains("torn tail", StringComparison.Ordinal));
            output.WriteLine($"{context}: acknowledged {ackedNow}, store holds {marker} (snapshot at {stats.SnapshotSequence}); {string.Join("; ", store.OpenNotes)}");
            held = marker;
        }
        output.WriteLine($"{kills} kills, {totalAcked} acknowledgements, {tornTails} torn tails discarded, snapshot present after {compactionsSeen} kills");
        Assert.True(held > 0, "the writer never acknowledged anything: the test proved nothing");
    }
}
