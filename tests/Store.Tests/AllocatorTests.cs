using Appliance.Store.Alloc;
using Xunit.Abstractions;

namespace Appliance.Store.Tests;

/// <summary>The free-space bitmap: never hands out a block twice, keeps its count, and keeps large allocations
/// contiguous while small copy-on-write allocations churn.</summary>
public class AllocatorTests(ITestOutputHelper output)
{
    [Fact]
    public void Random_allocations_and_releases_agree_with_a_model()
    {
        var seed = TestSupport.Seed(output, nameof(Random_allocations_and_releases_agree_with_a_model));
        var rng = new Random(seed);
        for (var round = 0; round < 20; round++)
        {
            // Odd sizes too: the last word of the bitmap is partly past the end.
            var count = rng.Next(1, 3000);
            var first = rng.Next(0, 100);
            var alloc = new Allocator(first, count);
            var owned = new HashSet<long>();
            for (var step = 0; step < 2000; step++)
            {
                if (owned.Count > 0 && rng.Next(3) == 0)
                {
                    var give = owned.OrderBy(_ => rng.Next()).Take(rng.Next(1, Math.Min(owned.Count, 200) + 1)).ToList();
                    alloc.Release(give);
                    owned.ExceptWith(give);
                }
                else
                {
                    var want = rng.Next(4) == 0 ? rng.Next(64, 600) : rng.Next(1, 64);
                    var got = new List<long>();
                    var ok = alloc.TryAllocate(want, got);
                    Assert.Equal(want <= count - owned.Count, ok);
                    Assert.Equal(ok ? want : 0, got.Count);
                    foreach (var b in got)
                    {
                        Assert.InRange(b, first, first + count - 1);
                        Assert.True(owned.Add(b), $"seed {seed}: block {b} handed out twice");
                    }
                }
                Assert.Equal(count - owned.Count, alloc.Free);
            }
            Assert.Throws<InvalidOperationException>(() => alloc.Release([owned.Count > 0 ? owned.First() : first, owned.Count > 0 ? owned.First() : first]));
        }
    }

    [Fact]
    public void Large_allocations_stay_contiguous_while_single_blocks_churn()
    {
        // 256 MiB of data area, half of it in 4 MiB objects; then copy-on-write overwrites: each takes a fresh block
        // and frees the old one somewhere in the used half.
        const int blocks = 65536;
        var alloc = new Allocator(1000, blocks);
        var rng = new Random(7);
        var objects = new List<List<long>>();
        for (var i = 0; i < 32; i++)
        {
            var o = new List<long>();
            Assert.True(alloc.TryAllocate(1024, o));
            objects.Add(o);
        }
        for (var i = 0; i < 60_000; i++)
        {
            var o = objects[rng.Next(objects.Count)];
            var k = rng.Next(o.Count);
            var fresh = new List<long>();
            Assert.True(alloc.TryAllocate(1, fresh));
            alloc.Release([o[k]]);
            o[k] = fresh[0];
        }
        // A 4 MiB object written now comes out in a few long runs, not in the holes the churn left.
        var big = new List<long>();
        Assert.True(alloc.TryAllocate(1024, big));
        var runs = 1;
        for (var i = 1; i < big.Count; i++)
        {
            if (big[i] != big[i - 1] + 1)
            {
                runs++;
            }
        }
        output.WriteLine($"4 MiB allocation after churn: {runs} runs");
        Assert.True(runs <= 4, $"a 4 MiB allocation after churn came out in {runs} runs");
    }

    [Fact]
    public void A_large_allocation_takes_scattered_blocks_when_no_free_word_is_left()
    {
        var alloc = new Allocator(0, 640);
        var all = new List<long>();
        Assert.True(alloc.TryAllocate(640, all));
        // Free every other block: 320 free, no word entirely free.
        alloc.Release(all.Where(b => b % 2 == 0));
        var got = new List<long>();
        Assert.True(alloc.TryAllocate(300, got));
        Assert.Equal(300, got.Distinct().Count());
        Assert.All(got, b => Assert.Equal(0, b % 2));
        Assert.Equal(20, alloc.Free);
        Assert.False(alloc.TryAllocate(21, got));
        Assert.Equal(300, got.Count);
    }
}
