using Appliance.Store.Format;
using Appliance.Store.Journal;
using Xunit.Abstractions;

namespace Appliance.Store.Tests;

/// <summary>The on-disk encodings' building blocks: block crcs computed side by side, the copy-on-write manifest.</summary>
public class FormatTests(ITestOutputHelper output)
{
    [Fact]
    public void Block_crcs_computed_four_at_a_time_equal_one_at_a_time()
    {
        var rng = new Random(TestSupport.Seed(output, nameof(Block_crcs_computed_four_at_a_time_equal_one_at_a_time)));
        // The known answer of crc32c: "123456789" -> 0xE3069283.
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        foreach (var blocks in new[] { 1, 3, 4, 5, 8, 13 })
        {
            var data = new byte[blocks * 4096 + 8];
            rng.NextBytes(data);
            // An odd start: the words are read unaligned.
            var span = data.AsSpan(3, blocks * 4096);
            var crcs = new uint[blocks];
            Crc32C.ComputeBlocks(span, 4096, crcs);
            for (var b = 0; b < blocks; b++)
            {
                Assert.Equal(Crc32C.Compute(span.Slice(b * 4096, 4096)), crcs[b]);
            }
        }
        Assert.Throws<ArgumentException>(() => Crc32C.ComputeBlocks(new byte[4097], 4096, new uint[2]));
    }

    [Fact]
    public void A_manifest_reads_back_as_runs_of_adjacent_blocks()
    {
        var blocks = new List<(long, uint)> { (100, 1), (101, 2), (102, 3), (200, 4), (202, 5), (203, 6) };
        var buf = new byte[JournalRecord.ManifestSize(blocks)];
        Assert.Equal(buf.Length, JournalRecord.WriteManifest(buf, blocks));
        var runs = Read(buf, 10);
        Assert.Equal([100L, 200L, 202L], runs.Select(x => x.First));
        Assert.Equal([1u, 2u, 3u], runs[0].Crcs);
        Assert.Equal([4u], runs[1].Crcs);
        Assert.Equal([5u, 6u], runs[2].Crcs);
        // A run outside the data area is corruption, not a read past the device.
        Assert.Throws<CorruptionException>(() => Read(buf, 150));
    }

    private static List<(long First, uint[] Crcs)> Read(byte[] buf, long firstBlock)
    {
        var r = new SpanReader(buf, "manifest");
        var runs = JournalRecord.ReadManifest(ref r, firstBlock, 1000);
        Assert.True(r.AtEnd);
        return runs;
    }
}
