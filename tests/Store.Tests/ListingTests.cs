using Xunit.Abstractions;

namespace Appliance.Store.Tests;

/// <summary>Listing by sort-key range and cursor against a model, while objects come and go between pages
/// (node/Store/ObjectStore.Read.cs, ObjectId.cs).</summary>
public class ListingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Paged_range_walks_return_every_object_present_throughout_once_in_order_while_objects_come_and_go()
    {
        var seed = TestSupport.Seed(output, nameof(Paged_range_walks_return_every_object_present_throughout_once_in_order_while_objects_come_and_go));
        var rng = new Random(seed);
        var dev = await TestSupport.NewMemoryStoreAsync(16 << 20, TestSupport.Small(journal: 1 << 20, checkpoint: 1 << 20));
        var store = await ObjectStore.MountAsync(dev);
        try
        {
            await store.SubmitAsync(new Transaction().CreateCollection("pg").CreateCollection("elsewhere"));
            // The model: what "pg" holds. Few distinct hashes and names, so that equal hashes (ordered by name) and
            // equal names (different objects) are common.
            var model = new SortedSet<ObjectId>();
            ObjectId RandomId() => new(rng.Next(4) == 0 ? (uint)rng.Next(8) << 29 : (uint)rng.NextInt64(0, 1L << 32), "n" + rng.Next(30));

            async Task ChurnAsync()
            {
                var t = new Transaction();
                var added = new List<ObjectId>();
                var removed = new List<ObjectId>();
                for (var i = rng.Next(1, 6); i > 0; i--)
                {
                    var id = RandomId();
                    if (model.Contains(id) || added.Contains(id) || removed.Contains(id))
                    {
                        continue;
                    }
                    t.Touch("pg", id);
                    added.Add(id);
                }
                foreach (var id in model.Where(_ => rng.Next(8) == 0).Take(4))
                {
                    // Out by removal, or by a move to another collection (as a split or backfill does).
                    if (rng.Next(2) == 0)
                    {
                        t.Remove("pg", id);
                    }
                    else
                    {
                        t.Move("pg", id, "elsewhere", new ObjectId(id.Hash, id.Name + "." + rng.Next()));
                    }
                    removed.Add(id);
                }
                if (t.Count == 0)
                {
                    return;
                }
                await store.SubmitAsync(t);
                model.UnionWith(added);
                model.ExceptWith(removed);
            }

            for (var i = 0; i < 60; i++)
            {
                await ChurnAsync();
            }
            for (var walk = 0; walk < 150; walk++)
            {
                SortKeyRange range;
                if (rng.Next(2) == 0)
                {
                    var bits = rng.Next(0, 4);
                    range = SortKeyRange.ForHashBits(bits, (uint)rng.Next(1 << bits));
                }
                else
                {
                    var a = (ulong)rng.NextInt64(0, 1L << 32);
                    var b = (ulong)rng.NextInt64(0, (1L << 32) + 1);
                    range = new SortKeyRange(Math.Min(a, b), Math.Max(a, b));
                }
                var throughout = model.Where(range.Contains).ToHashSet();
                var returned = new List<ObjectId>();
                ObjectId? cursor = null;
                do
                {
                    var page = store.List("pg", cursor, rng.Next(1, 6), range);
                    foreach (var o in page.Objects)
                    {
                        Assert.True(range.Contains(o.Id), $"seed {seed}: {o.Id} is outside [{range.Start:x}, {range.End:x})");
                        Assert.True(model.Contains(o.Id), $"seed {seed}: {o.Id} is listed but not in the collection");
                        Assert.True(returned.Count == 0 || returned[^1].CompareTo(o.Id) < 0, $"seed {seed}: {o.Id} listed after {returned.LastOrDefault()}");
                        returned.Add(o.Id);
                    }
                    cursor = page.Next;
                    Assert.True(cursor is null || cursor == returned[^1], $"seed {seed}: the cursor is not the last id of its page");
                    // Between pages: objects come and go, ahead of the cursor and behind it.
                    if (rng.Next(2) == 0)
                    {
                        await ChurnAsync();
                        throughout.IntersectWith(model);
                    }
                    if (rng.Next(40) == 0)
                    {
                        // The cursor is an id: it outlives the store's memory.
                        await store.DisposeAsync();
                        store = await ObjectStore.MountAsync(dev);
                    }
                }
                while (cursor is not null);
                var missing = throughout.Except(returned).ToList();
                Assert.True(missing.Count == 0, $"seed {seed}: walk {walk} missed {string.Join(", ", missing)}");
                Assert.Equal(returned.Count, returned.Distinct().Count());
            }
            // After all that the whole listing is the model, in its order.
            Assert.Equal(model, store.List("pg", max: 100_000).Objects.Select(o => o.Id));
            var report = await store.FsckAsync();
            Assert.True(report.IsClean, report.ToString());
        }
        finally
        {
            await store.DisposeAsync();
        }
    }
}
