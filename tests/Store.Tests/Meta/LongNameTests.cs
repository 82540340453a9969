using Appliance.Store.Meta;

namespace Appliance.Store.Tests.Meta;

/// <summary>Object names longer than an index key holds (the OSD allows 2048 bytes): objects sharing the key's name
/// prefix and hash share one bucket key and still list, page, move and remount in exact bitwise order.</summary>
public sealed class LongNameTests
{
    [Fact]
    public async Task Long_names_sharing_a_key_list_page_and_move_in_order_across_a_remount()
    {
        var dev = await TestSupport.NewMemoryStoreAsync(16 << 20);
        var prefix = new string('\u00e9', MetaKeys.MaxKeyNameChars);
        var ids = new List<ObjectId>
        {
            new(5, prefix),
            new(5, prefix + "b"),
            new(5, prefix + "a" + new string('x', 1500)),
            new(5, prefix + "a"),
            new(5, prefix[..^1] + "z"),
            new(6, prefix + "a"),
            new(5, "short"),
        };
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            var t = new Transaction().CreateCollection("pg").CreateCollection("other");
            foreach (var (id, i) in ids.Select((id, i) => (id, i)))
            {
                t.Write("pg", id, 0, TestSupport.Bytes(5000, i)).SetXattr("pg", id, "i", [(byte)i]);
            }
            await store.SubmitAsync(t);
            await AssertListingAsync(store, "pg", ids);
            // Remove one of a bucket, move another out of it (to a bucket of its own elsewhere).
            await store.SubmitAsync(new Transaction().Remove("pg", ids[1]).Move("pg", ids[3], "other", ids[3]));
            ids.RemoveAt(3);
            ids.RemoveAt(1);
            await AssertListingAsync(store, "pg", ids);
            Assert.Equal([new ObjectId(5, prefix + "a")], (await store.ListAsync("other")).Objects.Select(o => o.Id));
            Assert.True((await store.FsckAsync()).IsClean);
        }
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            await AssertListingAsync(store, "pg", ids);
            Assert.Equal(TestSupport.Bytes(5000, 2), await store.ReadAsync("pg", new ObjectId(5, prefix + "a" + new string('x', 1500))));
            Assert.Equal([3], await store.GetXattrAsync("other", new ObjectId(5, prefix + "a"), "i"));
            Assert.Null(await store.StatAsync("pg", new ObjectId(5, prefix + "b")));
            Assert.True((await store.FsckAsync()).IsClean);
        }
    }

    private static async Task AssertListingAsync(ObjectStore store, string c, List<ObjectId> ids)
    {
        var expected = ids.Order().ToList();
        Assert.Equal(expected, (await store.ListAsync(c)).Objects.Select(o => o.Id));
        // Pages of two: cursors inside a bucket.
        var walked = new List<ObjectId>();
        ObjectId? after = null;
        do
        {
            var page = await store.ListAsync(c, after, 2);
            walked.AddRange(page.Objects.Select(o => o.Id));
            after = page.Next;
        }
        while (after is not null);
        Assert.Equal(expected, walked);
        foreach (var id in ids)
        {
            Assert.Equal(5000, (await store.StatAsync(c, id))!.Size);
        }
    }
}
