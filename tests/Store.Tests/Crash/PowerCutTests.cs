using Appliance.Platform.Devices;
using Appliance.Store.CrashWriter;
using Xunit.Abstractions;

namespace Appliance.Store.Tests.Crash;

/// <summary>
/// Power cuts at random moments through the fault-injecting device: unflushed writes are dropped, kept in a
/// random subset, or torn. After each cut the store must mount, pass fsck, hold every acknowledged transaction and
/// no part of any later one: it must equal the reference model after exactly the prefix its marker names.
/// </summary>
public class PowerCutTests(ITestOutputHelper output)
{
    private const int LargeWrite = 8 << 10;

    [Fact]
    public async Task Random_power_cuts_keep_every_acknowledged_transaction_and_nothing_partial()
    {
        var seed = TestSupport.Seed(output, nameof(Random_power_cuts_keep_every_acknowledged_transaction_and_nothing_partial));
        var rng = new Random(seed);
        var cuts = TestSupport.Soak ? 20_000 : 2000;
        var done = 0;
        var stats = new Dictionary<string, int>();
        while (done < cuts)
        {
            var blockSize = rng.Next(2) == 0 ? 512 : 4096;
            var inner = new MemoryDevice(6 << 20, blockSize);
            await ObjectStore.MkfsAsync(inner, TestSupport.Small(journal: rng.Next(2) == 0 ? 512 << 10 : 1 << 20, checkpoint: 128 << 10));
            var wseed = rng.Next();
            var snapshots = new Dictionary<long, Model> { [0] = new Model() };
            long held = 0;
            var lastCut = "none";
            for (var round = 0; round < 8 && done < cuts; round++, done++)
            {
                var context = $"seed {seed}, cut {done}, round {round}, block size {blockSize}, last cut {lastCut}";
                var fi = new FaultInjectingDevice(inner, rng.Next());
                ObjectStore store;
                long marker;
                try
                {
                    // Both write policies: the default (whole blocks copy-on-write, small data with the record) and
                    // deferring everything below LargeWrite.
                    var options = rng.Next(2) == 0 ? new StoreOptions() : new StoreOptions { DeferredWriteMax = LargeWrite };
                    store = await ObjectStore.MountAsync(new YieldingDevice(fi, rng.Next()), options);
                    marker = Workload.Marker(store);
                    Assert.True(marker >= held, $"{context}: store holds transaction {marker} but {held} was acknowledged");
                    Assert.True(snapshots.ContainsKey(marker), $"{context}: marker {marker} was never submitted");
                    var diffs = await snapshots[marker].DiffAsync(store);
                    Assert.True(diffs.Count == 0, $"{context}: state after {marker} differs from the model: {string.Join("; ", diffs)}");
                    var report = await store.FsckAsync();
                    Assert.True(report.IsClean, $"{context}: fsck: {report}");
                }
                catch (StoreException e)
                {
                    throw new Xunit.Sdk.XunitException($"{context}: {e}");
                }
                output.WriteLine($"{context}: mount notes: {string.Join("; ", store.MountNotes)}");
                held = marker;

                // Submit a few transactions back to back, then cut the power at a random moment.
                var model = snapshots[marker];
                snapshots = new Dictionary<long, Model> { [marker] = model };
                var k = rng.Next(1, 10);
                var tasks = new List<Task>();
                long acked = 0;
                string? failure = null;
                var ackLock = new Lock();
                for (var i = 1; i <= k; i++)
                {
                    var n = marker + i;
                    var ops = Workload.Generate(wseed, n, model, LargeWrite);
                    model = model.Copy();
                    model.Apply(ops);
                    snapshots[n] = model;
                    tasks.Add(store.SubmitAsync(Workload.ToTransaction(ops)).ContinueWith(t =>
                    {
                        lock (ackLock)
                        {
                            if (t.IsCompletedSuccessfully)
                            {
                                acked = Math.Max(acked, n);
                            }
                            else if (!fi.IsPoweredOff && failure is null)
                            {
                                failure = $"transaction {n} failed before the cut: {t.Exception}";
                            }
                        }
                    }, TaskScheduler.Default));
                }
                var wait = rng.Next(4);
                if (wait == 0)
                {
                    await Task.WhenAll(tasks);
                    Assert.True(failure is null, $"{context}: {failure}");
                    // A live store passes fsck and matches the model too (a bug here is not about crashes).
                    var live = await store.FsckAsync();
                    Assert.True(live.IsClean, $"{context}: live fsck after {marker + k}: {live}");
                    var liveDiffs = await model.DiffAsync(store);
                    Assert.True(liveDiffs.Count == 0, $"{context}: live state after {marker + k} differs from the model: {string.Join("; ", liveDiffs)}");
                }
                else
                {
                    for (var y = rng.Next(wait == 1 ? 5 : 300); y > 0; y--)
                    {
                        await Task.Yield();
                    }
                }
                var mode = (PowerCutMode)rng.Next(3);
                var cut = await fi.PowerCutAsync(mode);
                await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(30));
                await store.DisposeAsync();
                lock (ackLock)
                {
                    held = Math.Max(held, acked);
                }
                lastCut = $"{mode} kept {string.Join(',', cut.Kept)} dropped {string.Join(',', cut.Dropped)} torn {cut.Torn}";
                var key = $"{mode}:{(cut.Torn is null ? "" : "torn ")}{(cut.Kept.Count + cut.Dropped.Count > 0 ? "unflushed" : "clean")}";
                stats[key] = stats.GetValueOrDefault(key) + 1;
            }
        }
        output.WriteLine(string.Join(", ", stats.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}")));
    }
}
