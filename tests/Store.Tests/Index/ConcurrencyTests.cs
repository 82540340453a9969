using System.Collections.Concurrent;
using Appliance.Platform.Devices;
using Appliance.Store.Index;
using Xunit.Abstractions;
using static Appliance.Store.Tests.Index.IndexTestSupport;

namespace Appliance.Store.Tests.Index;

/// <summary>Readers on other threads scan snapshots while the writer commits and releases pages: every snapshot
/// reads exactly the commit it was opened on.</summary>
public class ConcurrencyTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Snapshots_scanned_on_other_threads_see_exactly_their_commit_while_the_writer_goes_on()
    {
        var seed = TestSupport.Seed(output, nameof(Snapshots_scanned_on_other_threads_see_exactly_their_commit_while_the_writer_goes_on));
        var device = new MemoryDevice(256L << 20, 4096);
        var allocator = Allocator(device);
        await using var tree = BPlusTree.Create(device, allocator, Options(cachePages: 24));
        // Each commit's contents by generation, for the readers to compare against.
        var commits = new ConcurrentDictionary<long, SortedDictionary<byte[], byte[]>>();
        var model = new SortedDictionary<byte[], byte[]>(ByteOrder.Instance);
        var rng = new Random(seed);
        await CrashTests.MutateAsync(tree, model, rng, 500);
        var first = await tree.CommitAsync();
        commits[first.Generation] = Copy(model);
        tree.ReleaseFreedPages(first.Generation);

        using var stop = new CancellationTokenSource();
        var checkedScans = 0;
        var firstScan = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task ReadAsync(int reader)
        {
            while (!stop.IsCancellationRequested)
            {
                using var snapshot = tree.OpenSnapshot();
                var expected = commits[snapshot.Root.Generation];
                var got = await ScanAllAsync(snapshot.Scan(Array.Empty<byte>()));
                Assert.Equal(expected.Count, got.Count);
                var i = 0;
                foreach (var (k, v) in expected)
                {
                    Assert.True(k.AsSpan().SequenceEqual(got[i].Key) && v.AsSpan().SequenceEqual(got[i].Value),
                        $"seed {seed}: reader {reader}, snapshot of commit {snapshot.Root.Generation}, entry {i} differs");
                    i++;
                }
                Interlocked.Increment(ref checkedScans);
                firstScan.TrySetResult();
            }
        }
        var readers = Enumerable.Range(0, 2).Select(r => Task.Run(() => ReadAsync(r))).ToArray();
        for (var round = 0; round < 30; round++)
        {
            await CrashTests.MutateAsync(tree, model, rng, rng.Next(20, 200));
            // Recorded before the commit: a reader may open a snapshot of it before CommitAsync returns here.
            commits[tree.Committed.Generation + 1] = Copy(model);
            var root = await tree.CommitAsync();
            Assert.True(commits.ContainsKey(root.Generation));
            tree.ReleaseFreedPages(root.Generation);
            if (readers.Any(r => r.IsCompleted))
            {
                break;
            }
        }
        // On a busy machine the readers may not have been scheduled yet while the writer went through its rounds:
        // they check at least one snapshot (of the last commit) before they are stopped.
        await Task.WhenAny(firstScan.Task, Task.WhenAll(readers)).WaitAsync(TimeSpan.FromSeconds(60));
        await stop.CancelAsync();
        await Task.WhenAll(readers);
        output.WriteLine($"{checkedScans} snapshot scans checked");
        Assert.True(checkedScans > 0);
        await AssertSoundAsync(tree, allocator, $"seed {seed}");
        Assert.Equal(0, tree.WaitingPages);
    }
}
