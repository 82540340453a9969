using Appliance.Store.Format;
using Appliance.Store.Journal;

namespace Appliance.Store.Tests;

/// <summary>The on-disk encodings' building blocks: the copy-on-write manifest. (Block crcs are tested with crc32c in
/// the platform's tests.)</summary>
public class FormatTests
{
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
