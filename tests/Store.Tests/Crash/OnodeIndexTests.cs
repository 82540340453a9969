using Appliance.Platform.Devices;
using Xunit.Abstractions;

namespace Appliance.Store.Tests.Crash;

/// <summary>
/// Onodes in the index, at a size where the tree is several levels deep and a 16-page cache must evict: power cuts at
/// random moments while transactions create, remove, move and split objects, set xattrs and write data. After each
/// cut the store holds exactly a prefix of the submitted transactions, at least every acknowledged one: listings of
/// both collections (paged), xattrs and data equal the model's, and fsck passes.
/// </summary>
public class OnodeIndexTests(ITestOutputHelper output)
{
    private static readonly StoreOptions TinyCache = new() { IndexCacheBytes = 16 * 4096 };
    private const int Fill = 12;

    /// <summary>An object: where it is, its xattr, and the seed of its 4 KiB of data (-1: none).</summary>
    private sealed record Obj(string Coll, byte[] Xattr, int Data);

    private static readonly ObjectId Marker = new(0, "marker");

    /// <summary>Transaction n (n ≥ 1), applied to <paramref name="model"/> too. Ids are unique across both
    /// collections, so every move is valid: moves go a → b for even hashes and b → a for any; splits move the odd
    /// hashes of one collection to the other when that one holds none.</summary>
    private static Transaction Generate(int seed, long n, Dictionary<ObjectId, Obj> model)
    {
        var rng = new Random(HashCode.Combine(seed, n));
        var t = new Transaction();
        if (n == 1)
        {
            t.CreateCollection("a").CreateCollection("b");
        }
        var ops = n <= Fill ? 400 : rng.Next(1, 120);
        var ids = model.Keys.Where(id => id != Marker).ToList();
        var touched = new HashSet<ObjectId>();
        for (var i = 0; i < ops; i++)
        {
            var what = n <= Fill ? 0 : rng.Next(12);
            var pick = ids.Count > 0 ? ids[rng.Next(ids.Count)] : Marker;
            if (what < 4 || pick == Marker || !touched.Add(pick))
            {
                var id = new ObjectId((uint)rng.NextInt64(1L << 32), $"rbd_data.{n}.{i}.{new string('x', rng.Next(0, 60))}");
                if (model.ContainsKey(id))
                {
                    continue;
                }
                var x = TestSupport.Bytes(rng.Next(1, 200), rng.Next());
                var data = rng.Next(4) == 0 ? rng.Next() : -1;
                t.SetXattr("a", id, "_", x);
                if (data >= 0)
                {
                    t.Write("a", id, 0, TestSupport.Bytes(4096, data));
                }
                model[id] = new Obj("a", x, data);
                ids.Add(id);
                touched.Add(id);
                continue;
            }
            var o = model[pick];
            switch (what)
            {
                case < 6:
                    t.Remove(o.Coll, pick);
                    model.Remove(pick);
                    ids.Remove(pick);
                    break;
                case < 8:
                {
                    var x = TestSupport.Bytes(rng.Next(1, 3000), rng.Next());
                    t.SetXattr(o.Coll, pick, "_", x);
                    model[pick] = o with { Xattr = x };
                    break;
                }
                case < 9:
                {
                    var data = rng.Next();
                    t.Write(o.Coll, pick, 0, TestSupport.Bytes(4096, data));
                    model[pick] = o with { Data = data };
                    break;
                }
                default:
                    if (o.Coll == "b" || pick.Hash % 2 == 0)
                    {
                        var to = o.Coll == "a" ? "b" : "a";
                        t.Move(o.Coll, pick, to, pick);
                        model[pick] = o with { Coll = to };
                    }
                    break;
            }
        }
        // A split needs a destination without matching objects: a → b while b holds no odd hash, else b → a (its
        // odd objects back) while a holds none.
        var split = n > Fill && rng.Next(6) == 0;
        if (split && model.Any(kv => kv.Value.Coll == "b" && kv.Key.Hash % 2 == 1) && !model.Any(kv => kv.Value.Coll == "a" && kv.Key.Hash % 2 == 1))
        {
            t.SplitCollection("b", 1, 1, "a");
            foreach (var (id, o) in model.Where(kv => kv.Value.Coll == "b" && kv.Key.Hash % 2 == 1).ToList())
            {
                model[id] = o with { Coll = "a" };
            }
        }
        else if (split && !model.Any(kv => kv.Value.Coll == "b" && kv.Key.Hash % 2 == 1))
        {
            t.SplitCollection("a", 1, 1, "b");
            foreach (var (id, o) in model.Where(kv => kv.Value.Coll == "a" && kv.Key.Hash % 2 == 1).ToList())
            {
                model[id] = o with { Coll = "b" };
            }
        }
        t.SetXattr("a", Marker, "n", BitConverter.GetBytes(n));
        model[Marker] = new Obj("a", BitConverter.GetBytes(n), -1);
        return t;
    }

    private static async Task<long> MarkerAsync(ObjectStore store) =>
        store.CollectionExists("a") && await store.StatAsync("a", Marker) is not null
            ? BitConverter.ToInt64(await store.GetXattrAsync("a", Marker, "n")) : 0;

    private static async Task AssertSameAsync(ObjectStore store, Dictionary<ObjectId, Obj> model, int seed, string context)
    {
        foreach (var c in new[] { "a", "b" })
        {
            var got = new List<ObjectId>();
            ObjectId? after = null;
            do
            {
                var page = await store.ListAsync(c, after, 97);
                got.AddRange(page.Objects.Select(o => o.Id));
                after = page.Next;
            }
            while (after is not null);
            var expected = model.Where(kv => kv.Value.Coll == c).Select(kv => kv.Key).Order().ToList();
            Assert.True(expected.SequenceEqual(got), $"{context}: collection {c} lists {got.Count} objects, the model {expected.Count}");
        }
        var rng = new Random(seed);
        foreach (var (id, o) in model.Where(_ => rng.Next(5) == 0))
        {
            Assert.True((await store.GetXattrAsync(o.Coll, id, id == Marker ? "n" : "_"))!.AsSpan().SequenceEqual(o.Xattr), $"{context}: {o.Coll}/{id} xattr");
            if (o.Data >= 0)
            {
                Assert.True((await store.ReadAsync(o.Coll, id)).AsSpan().SequenceEqual(TestSupport.Bytes(4096, o.Data)), $"{context}: {o.Coll}/{id} data");
            }
        }
    }

    [Fact]
    public async Task Onodes_in_a_deep_index_with_a_small_cache_survive_power_cuts()
    {
        var seed = TestSupport.Seed(output, nameof(Onodes_in_a_deep_index_with_a_small_cache_survive_power_cuts));
        var rng = new Random(seed);
        var inner = new MemoryDevice(96 << 20, 4096);
        await ObjectStore.MkfsAsync(inner, TestSupport.Small(journal: 1 << 20, checkpoint: 256 << 10));
        var states = new Dictionary<long, Dictionary<ObjectId, Obj>> { [0] = [] };
        long held = 0;
        var cuts = TestSupport.Soak ? 200 : 24;
        var deepest = 0;
        for (var cut = 0; cut < cuts; cut++)
        {
            var fi = new FaultInjectingDevice(inner, rng.Next());
            var store = await ObjectStore.MountAsync(new YieldingDevice(fi, rng.Next()), TinyCache);
            var marker = await MarkerAsync(store);
            var context = $"seed {seed} cut {cut} marker {marker}";
            Assert.True(marker >= held, $"{context}: store holds transaction {marker} but {held} was acknowledged");
            Assert.True(states.ContainsKey(marker), $"{context}: marker {marker} was never submitted");
            var model = states[marker];
            if (marker > 0 && (cut % 4 == 0 || cut == cuts - 1))
            {
                await AssertSameAsync(store, model, seed + cut, context);
                var report = await store.FsckAsync();
                Assert.True(report.IsClean, $"{context}: fsck: {report}");
                output.WriteLine($"{context}: {report.Objects} objects; {string.Join("; ", report.Notes)}");
            }
            deepest = Math.Max(deepest, store.IndexHeightForTests);
            held = marker;
            states = new() { [marker] = model };

            var tasks = new List<Task>();
            long acked = 0;
            var ackLock = new Lock();
            Exception? failure = null;
            var k = marker < Fill ? Fill - (int)marker : rng.Next(1, 8);
            for (var i = 1; i <= k; i++)
            {
                var n = marker + i;
                model = new Dictionary<ObjectId, Obj>(model);
                var t = Generate(seed, n, model);
                states[n] = model;
                tasks.Add(store.SubmitAsync(t).ContinueWith(r =>
                {
                    failure ??= r.Exception?.GetBaseException();
                    if (r.IsCompletedSuccessfully)
                    {
                        lock (ackLock)
                        {
                            acked = Math.Max(acked, n);
                        }
                    }
                }, TaskScheduler.Default));
            }
            if (marker < Fill || rng.Next(3) == 0)
            {
                await Task.WhenAll(tasks);
                Assert.True(marker + k == acked, $"{context}: acknowledged {acked} of {marker + k}: {failure}");
                if (rng.Next(2) == 0)
                {
                    await store.CheckpointAsync();
                }
            }
            for (var y = rng.Next(400); y > 0; y--)
            {
                await Task.Yield();
            }
            await fi.PowerCutAsync((PowerCutMode)rng.Next(3));
            await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
            await store.DisposeAsync();
            lock (ackLock)
            {
                held = Math.Max(held, acked);
            }
        }
        Assert.True(deepest >= 2, $"the index never got deeper than {deepest} levels");
    }
}
