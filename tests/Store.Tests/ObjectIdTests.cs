namespace Appliance.Store.Tests;

/// <summary>The listing order of ids and the sort-key ranges of hash bits (node/Store/ObjectId.cs).</summary>
public class ObjectIdTests
{
    [Theory]
    [InlineData(0u, 0u)]
    [InlineData(1u, 0x80000000u)]
    [InlineData(0x80000000u, 1u)]
    [InlineData(0x0000000Fu, 0xF0000000u)]
    [InlineData(0x12345678u, 0x1E6A2C48u)]
    [InlineData(0xFFFFFFFFu, 0xFFFFFFFFu)]
    public void ReverseBits_mirrors_the_32_bits(uint v, uint reversed)
    {
        Assert.Equal(reversed, ObjectId.ReverseBits(v));
        Assert.Equal(v, ObjectId.ReverseBits(reversed));
    }

    [Fact]
    public void Ids_order_by_reversed_hash_then_name_and_a_string_is_hash_0()
    {
        ObjectId plain = "x";
        Assert.Equal(new ObjectId(0, "x"), plain);
        Assert.NotEqual(new ObjectId(1, "x"), plain);
        // Hash 2 (reversed 0x40000000) sorts before hash 1 (reversed 0x80000000).
        Assert.True(new ObjectId(2, "z").CompareTo(new ObjectId(1, "a")) < 0);
        Assert.True(new ObjectId(1, "a").CompareTo(new ObjectId(1, "b")) < 0);
        Assert.True(new ObjectId(1, "B").CompareTo(new ObjectId(1, "a")) < 0, "names compare ordinally");
        Assert.Equal(0, new ObjectId(7, "n").CompareTo(new ObjectId(7, "n")));
    }

    [Fact]
    public void The_range_of_hash_bits_holds_exactly_the_matching_hashes_and_splits_into_contiguous_halves()
    {
        var rng = new Random(5);
        for (var bits = 0; bits <= 32; bits++)
        {
            var mask = SortKeyRange.Mask(bits);
            var match = (uint)rng.NextInt64(0, 1L << 32) & mask;
            var range = SortKeyRange.ForHashBits(bits, match);
            Assert.Equal(1UL << (32 - bits), range.End - range.Start);
            for (var i = 0; i < 200; i++)
            {
                var h = i % 2 == 0 ? (uint)rng.NextInt64(0, 1L << 32) : ((uint)rng.NextInt64(0, 1L << 32) & ~mask) | match;
                var id = new ObjectId(h, "o");
                Assert.Equal(id.Matches(bits, match), range.Contains(id));
            }
            if (bits < 32)
            {
                // PG split: the two children of (bits, match) are the two halves of its range, in order.
                var low = SortKeyRange.ForHashBits(bits + 1, match);
                var high = SortKeyRange.ForHashBits(bits + 1, match | (1u << bits));
                Assert.Equal(range.Start, low.Start);
                Assert.Equal(low.End, high.Start);
                Assert.Equal(range.End, high.End);
            }
        }
        Assert.Equal(SortKeyRange.All, SortKeyRange.ForHashBits(0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => SortKeyRange.ForHashBits(2, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => SortKeyRange.ForHashBits(33, 0));
    }
}
