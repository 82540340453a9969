using Appliance.Store.Meta;
using Xunit.Abstractions;

namespace Appliance.Store.Tests.Meta;

/// <summary>Onode keys and values (node/Store/Meta/IndexKeys.cs, OnodeCodec.cs): key order is the listing order,
/// long names share bucket keys in name order, extent maps round-trip with holes and per-block crcs.</summary>
public sealed class OnodeKeyTests(ITestOutputHelper output)
{
    private static string RandomName(Random rng, string prefix)
    {
        var chars = "ab\u00e9\uE000\U0001F600z";
        var n = rng.Next(0, 6);
        var s = prefix;
        for (var i = 0; i < n; i++)
        {
            s += chars[rng.Next(chars.Length)];
        }
        return s;
    }

    [Fact]
    public void Memcmp_of_onode_keys_is_the_bitwise_listing_order_with_long_names_in_buckets()
    {
        var rng = new Random(TestSupport.Seed(output, nameof(Memcmp_of_onode_keys_is_the_bitwise_listing_order_with_long_names_in_buckets)));
        var longPrefix = new string('p', MetaKeys.MaxKeyNameChars - 1);
        var ids = new HashSet<ObjectId>();
        while (ids.Count < 3000)
        {
            var hash = (uint)rng.Next(4) << rng.Next(30);
            var name = rng.Next(4) switch
            {
                0 => RandomName(rng, ""),
                // Around the cut: exactly the key's length, one more, many more (same prefix: one bucket).
                1 => RandomName(rng, longPrefix),
                2 => longPrefix + "q" + RandomName(rng, "x"),
                _ => longPrefix + "q" + new string('r', rng.Next(0, 3000)),
            };
            ids.Add(new ObjectId(hash, name));
        }
        var sorted = ids.Order().ToList();
        for (var i = 1; i < sorted.Count; i++)
        {
            var a = MetaKeys.OnodeKey("pg.1", sorted[i - 1]);
            var b = MetaKeys.OnodeKey("pg.1", sorted[i]);
            var c = a.AsSpan().SequenceCompareTo(b);
            // Keys never invert the order; equal keys are one bucket (same hash, long names with one prefix),
            // ordered inside by the rest of the name.
            Assert.True(c <= 0, $"{sorted[i - 1]} sorts before {sorted[i]} but its key does not");
            if (c == 0)
            {
                Assert.Equal(sorted[i - 1].Hash, sorted[i].Hash);
                Assert.True(sorted[i].Name.Length > MetaKeys.MaxKeyNameChars && sorted[i - 1].Name.Length > MetaKeys.MaxKeyNameChars);
                Assert.True(string.CompareOrdinal(MetaKeys.TailOf(sorted[i - 1]), MetaKeys.TailOf(sorted[i])) < 0);
            }
            Assert.True(a.Length <= Appliance.Store.Index.BPlusTree.MaxKeyLength);
            var k = MetaKeys.DecodeOnodeKey(b)!.Value;
            Assert.Equal(("pg.1", sorted[i].SortKey), (k.Collection, k.SortKey));
            Assert.StartsWith(k.NamePrefix, sorted[i].Name, StringComparison.Ordinal);
            Assert.Equal(sorted[i].Name.Length > MetaKeys.MaxKeyNameChars, k.Bucket);
        }
        // A collection's keys are one range, and a hash range is [OnodeRangeKey(start), OnodeRangeKey(end)).
        var inRange = sorted.Where(id => id.SortKey >= 1u << 30 && id.SortKey < 3u << 30).ToList();
        var from = MetaKeys.OnodeRangeKey("pg.1", 1u << 30);
        var to = MetaKeys.OnodeRangeKey("pg.1", 3u << 30);
        Assert.Equal(inRange, sorted.Where(id => MetaKeys.OnodeKey("pg.1", id) is var key
            && key.AsSpan().SequenceCompareTo(from) >= 0 && key.AsSpan().SequenceCompareTo(to) < 0));
        var other = MetaKeys.OnodeKey("pg.10", sorted[0]);
        Assert.True(other.AsSpan().SequenceCompareTo(MetaKeys.OnodeRangeKey("pg.1", SortKeyRange.KeySpace)) >= 0
            || other.AsSpan().SequenceCompareTo(MetaKeys.OnodeRangeKey("pg.1", 0)) < 0);
    }

    [Fact]
    public void An_onode_slot_round_trips_with_extents_holes_crcs_and_xattrs()
    {
        var longName = new string('n', MetaKeys.MaxKeyNameChars) + "tail";
        var slot = new OnodeSlot();
        var a = new Onode(new ObjectId(0x1234, longName)) { Nid = 7, Size = 10 * 4096 + 5, HasOmap = true };
        a.Resize(11, _ => { });
        // Two runs and holes: blocks 1-3 contiguous, 5 alone, 6-7 contiguous elsewhere, 10 at the end.
        long[] phys = [0, 100, 101, 102, 0, 200, 300, 301, 0, 0, 50];
        for (var i = 0; i < phys.Length; i++)
        {
            a.Block(i) = phys[i] == 0 ? default : new BlockRef(phys[i], (uint)(i * 7919));
        }
        a.Xattrs["_"] = [1, 2, 3];
        a.Xattrs["snapset"] = new byte[3000];
        var b = new Onode(new ObjectId(0x1234, longName + "2")) { Nid = 9 };
        slot.Add(b);
        slot.Add(a);
        Assert.Same(a, slot.Objects[0]);
        var key = MetaKeys.OnodeKey("pg", a.Id);
        Assert.Equal(key, MetaKeys.OnodeKey("pg", b.Id));
        var back = OnodeCodec.Decode(key, OnodeCodec.Encode(slot), 10, 1000);
        Assert.Equal([a.Id, b.Id], back.Objects.Select(o => o.Id));
        var a2 = back.Objects[0];
        Assert.Equal((7UL, 10 * 4096L + 5, true), (a2.Nid, a2.Size, a2.HasOmap));
        Assert.Equal(a.Blocks.ToArray(), a2.Blocks.ToArray());
        Assert.Equal(a.Xattrs["snapset"], a2.Xattrs["snapset"]);
        Assert.Equal([1, 2, 3], a2.Xattrs["_"]);
        // Outside the data area, or under another hash's key: corruption, named.
        Assert.Throws<CorruptionException>(() => OnodeCodec.Decode(key, OnodeCodec.Encode(slot), 10, 301));
        var wrong = MetaKeys.OnodeKey("pg", new ObjectId(0x1235, longName));
        Assert.Contains("under a key of hash", Assert.Throws<CorruptionException>(() => OnodeCodec.Decode(wrong, OnodeCodec.Encode(slot), 10, 1000)).Message);
    }
}
