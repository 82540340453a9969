using System.Buffers.Binary;
using Appliance.Platform.Devices;
using Xunit.Abstractions;

namespace Appliance.Store.Tests;

/// <summary>Submission order per collection (node/Store/ObjectStore.Order.cs): transactions sharing a collection
/// apply in call order; transactions on other collections do not wait for them.</summary>
public class OrderingTests(ITestOutputHelper output)
{
    /// <summary>Bound on each wait below: a hang fails the test instead of hanging the run (not a timing
    /// assertion: every awaited thing happens at once when the store is right).</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_transaction_on_another_collection_completes_while_one_on_a_collection_waits_for_its_read()
    {
        var gated = new GatedDevice(new MemoryDevice(16 << 20, 4096));
        await ObjectStore.MkfsAsync(gated, TestSupport.Small(journal: 1 << 20));
        await using var store = await ObjectStore.MountAsync(gated);
        await store.SubmitAsync(new Transaction().CreateCollection("A").CreateCollection("B").CreateCollection("C")
            .Write("A", "x", 0, new byte[4096]).Touch("B", "y"));
        // The block is on the device and nowhere in memory: a partial write of it must read it.
        await store.CheckpointAsync();
        var gate = gated.Hold(store.DeviceOffsetsOf("A", "x")[0].Offset);

        try
        {
            await HeldAsync(store, gate);
        }
        finally
        {
            // Never leave the held read hanging (the store's disposal would wait for it).
            gate.Release();
        }
        var report = await store.FsckAsync();
        Assert.True(report.IsClean, report.ToString());
    }

    private static async Task HeldAsync(ObjectStore store, ReadGate gate)
    {
        var held = store.SubmitAsync(new Transaction().Write("A", "x", 10, [1, 2, 3]));
        await gate.Reached.Task.WaitAsync(Bound);
        // Called after the held one: on A, which must wait.
        var afterOnA = store.SubmitAsync(new Transaction().Write("A", "x", 11, [9]));
        // On B and C only: nothing to wait for (under one global lock, this would wait for the read on A).
        await store.SubmitAsync(new Transaction().Write("B", "y", 1, [5]).Touch("C", "z")).WaitAsync(Bound);
        Assert.NotNull(store.Stat("C", "z"));
        // On A and B: waits for A; a later one on B only waits behind it.
        var onAB = store.SubmitAsync(new Transaction().Write("A", "x", 12, [8]).Write("B", "y", 0, [1]));
        var afterOnB = store.SubmitAsync(new Transaction().Write("B", "y", 0, [2]));
        Assert.False(held.IsCompleted);
        Assert.False(afterOnA.IsCompleted, "a later transaction on A completed before the held one");
        Assert.False(onAB.IsCompleted, "a later transaction on A and B completed before the held one on A");
        Assert.False(afterOnB.IsCompleted, "a transaction on B overtook an earlier one on A and B");
        // Readers are not held either.
        Assert.Equal(new byte[] { 0, 5 }, await store.ReadAsync("B", "y").WaitAsync(Bound));

        gate.Release();
        await Task.WhenAll(held, afterOnA, onAB, afterOnB).WaitAsync(Bound);
        var x = await store.ReadAsync("A", "x");
        Assert.Equal(new byte[] { 1, 9, 8 }, x[10..13]);
        Assert.Equal(new byte[] { 2, 5 }, await store.ReadAsync("B", "y"));
    }

    [Fact]
    public async Task Transactions_sharing_a_collection_apply_in_call_order_under_concurrency()
    {
        var seed = TestSupport.Seed(output, nameof(Transactions_sharing_a_collection_apply_in_call_order_under_concurrency));
        var rng = new Random(seed);
        var inner = new MemoryDevice(32 << 20, 4096);
        await ObjectStore.MkfsAsync(inner, TestSupport.Small(journal: 4 << 20, checkpoint: 2 << 20));
        var fi = new FaultInjectingDevice(inner, seed);
        var store = await ObjectStore.MountAsync(new YieldingDevice(fi, seed));
        string[] colls = ["p0", "p1", "p2", "p3"];
        var setup = new Transaction();
        foreach (var c in colls)
        {
            setup.CreateCollection(c).Write(c, "cur", 0, Value(-1));
        }
        await store.SubmitAsync(setup);

        // Transaction i, on one or two collections, copies each one's "cur" to "saw{i}" and then writes i into
        // "cur" (a sub-block write: it reads the block). In call order, saw{i} holds the value of the previous
        // transaction on that collection; any reordering on a collection shows as another value.
        var expected = new List<(string C, int I, int Saw)>();
        var last = colls.ToDictionary(c => c, _ => -1);
        var tasks = new List<Task>();
        for (var i = 0; i < 300; i++)
        {
            var mine = rng.Next(3) == 0 ? colls.OrderBy(_ => rng.Next()).Take(2).ToArray() : [colls[rng.Next(colls.Length)]];
            var t = new Transaction();
            foreach (var c in mine)
            {
                t.Clone(c, "cur", $"saw{i}").Write(c, "cur", 0, Value(i));
                expected.Add((c, i, last[c]));
                last[c] = i;
            }
            // Not awaited: up to 300 in flight, issued in this order.
            tasks.Add(store.SubmitAsync(t));
        }
        await Task.WhenAll(tasks).WaitAsync(Bound);
        await CheckAsync(store, "before the power cut", fsck: false); // fsck would checkpoint: nothing left to replay
        // Every transaction is acknowledged: after a cut, replay of the journal the concurrent publishers filled
        // (its tail since the last checkpoint) must give the same state.
        await fi.PowerCutAsync(PowerCutMode.DropUnflushed);
        await store.DisposeAsync();
        await using var again = await ObjectStore.MountAsync(inner);
        output.WriteLine($"mount after the cut: {string.Join("; ", again.MountNotes)}");
        await CheckAsync(again, $"after the power cut ({string.Join("; ", again.MountNotes)})", fsck: true);

        async Task CheckAsync(ObjectStore s, string when, bool fsck)
        {
            foreach (var (c, i, saw) in expected)
            {
                var got = BinaryPrimitives.ReadInt32LittleEndian(await s.ReadAsync(c, $"saw{i}"));
                Assert.True(got == saw, $"seed {seed}, {when}: transaction {i} saw {got} in {c}/cur, the transaction before it on {c} in call order wrote {saw}");
            }
            foreach (var c in colls)
            {
                Assert.Equal(last[c], BinaryPrimitives.ReadInt32LittleEndian(await s.ReadAsync(c, "cur")));
            }
            if (fsck)
            {
                var report = await s.FsckAsync();
                Assert.True(report.IsClean, $"{when}: {report}");
            }
        }
    }

    private static byte[] Value(int v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, v);
        return b;
    }
}

/// <summary>Passes every call through, except that a read covering a held offset waits until the test releases it
/// (after telling the test it got there).</summary>
public sealed class GatedDevice(IBlockDevice inner) : IBlockDevice
{
    private volatile ReadGate? _gate;

    public string Name => inner.Name;
    public long Size => inner.Size;
    public int BlockSize => inner.BlockSize;
    public int MemoryAlignment => inner.MemoryAlignment;
    public bool IsReadOnly => inner.IsReadOnly;

    /// <summary>Holds the next reads covering <paramref name="offset"/> until <see cref="ReadGate.Release"/>.</summary>
    public ReadGate Hold(long offset) => _gate = new ReadGate(offset);

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        if (_gate is { } g && g.Offset >= offset && g.Offset < offset + destination.Length)
        {
            g.Reached.TrySetResult();
            await g.Released.Task;
        }
        await inner.ReadAsync(offset, destination, ct);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, CancellationToken ct = default) => inner.WriteAsync(offset, source, ct);

    public ValueTask FlushAsync(CancellationToken ct = default) => inner.FlushAsync(ct);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken ct = default) => inner.DiscardAsync(offset, length, ct);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}

public sealed class ReadGate(long offset)
{
    public long Offset { get; } = offset;

    public TaskCompletionSource Reached { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Release() => Released.TrySetResult();
}
