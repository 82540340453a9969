using System.Diagnostics;
using Appliance.Platform.Devices;
using Appliance.Store.CrashWriter;
using Xunit.Abstractions;

namespace Appliance.Store.Tests.Crash;

/// <summary>
/// A real writer process (Store.CrashWriter) on a file device, acknowledging each durable transaction on stdout,
/// killed with SIGKILL at random moments; after each kill the store mounts, passes fsck, holds every acknowledged
/// transaction and equals the model after exactly the prefix it holds. Then the writer continues, and is killed again.
/// </summary>
public class KillTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Writer_killed_with_sigkill_loses_nothing_acknowledged()
    {
        var seed = TestSupport.Seed(output, nameof(Writer_killed_with_sigkill_loses_nothing_acknowledged));
        var rng = new Random(seed);
        using var dir = new TempDir();
        var path = dir.File("disk");
        await using (var dev = FileDevice.CreateFile(path, 48L << 20))
        {
            await ObjectStore.MkfsAsync(dev, TestSupport.Small(journal: 1 << 20, checkpoint: 1 << 20));
        }
        var writer = typeof(Workload).Assembly.Location;
        var kills = TestSupport.Soak ? 200 : 24;
        var model = new Model();
        long modelAt = 0, held = 0, totalAcks = 0;
        for (var kill = 0; kill < kills; kill++)
        {
            var acked = 0L;
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var errors = new List<string>();
            var psi = new ProcessStartInfo("dotnet", [writer, path, seed.ToString(System.Globalization.CultureInfo.InvariantCulture), "8"])
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
                        acked = Math.Max(acked, long.Parse(e.Data[4..], System.Globalization.CultureInfo.InvariantCulture));
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
            await Task.Delay(rng.Next(20, 400));
            proc.Kill(); // SIGKILL: no cleanup, no final checkpoint
            await proc.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            long ackedNow;
            lock (errors)
            {
                ackedNow = acked;
                Assert.True(errors.Count == 0, $"seed {seed} kill {kill}: writer said: {string.Join("\n", errors)}");
            }
            held = Math.Max(held, ackedNow);
            totalAcks += ackedNow;

            await using var dev = FileDevice.Open(path);
            await using var store = await ObjectStore.MountAsync(dev);
            var marker = Workload.Marker(store);
            var context = $"seed {seed} kill {kill}";
            Assert.True(marker >= held, $"{context}: store holds transaction {marker} but {held} was acknowledged");
            for (; modelAt < marker; modelAt++)
            {
                model.Apply(Workload.Generate(seed, modelAt + 1, model));
            }
            var diffs = await model.DiffAsync(store);
            Assert.True(diffs.Count == 0, $"{context}: state after {marker} differs from the model: {string.Join("; ", diffs)}");
            var report = await store.FsckAsync();
            Assert.True(report.IsClean, $"{context}: fsck: {report}");
            output.WriteLine($"{context}: acknowledged {ackedNow}, store holds {marker}; {string.Join("; ", store.MountNotes)}");
        }
        Assert.True(held > 0, "the writer never acknowledged anything: the test proved nothing");
    }
}
