using System.Buffers;
using Appliance.Monitor.Storage;
using Xunit.Abstractions;

namespace Appliance.Monitor.Tests.Storage;

/// <summary>
/// Power loss simulated on the files: the log cut or garbled at every byte of its last record (a torn append: the
/// batch is wholly absent, the earlier ones wholly present), damage in a middle record (a typed corruption error,
/// never a silently shorter history), damaged headers and snapshots, sequence gaps.
/// </summary>
public class PowerLossTests(ITestOutputHelper output)
{
    private const int Seed = 4242;
    private const int Batches = 6;

    /// <summary>A store holding the workload's first <see cref="Batches"/> batches, closed; returns the log's scan.</summary>
    private static (string LogPath, byte[] Log, LogScan Scan) Build(TempDir dir)
    {
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.Write(store, Seed, 1, Batches);
        }
        var logPath = Path.Combine(dir.Path, "log");
        var log = File.ReadAllBytes(logPath);
        var scan = LogFormat.Scan(log, logPath);
        Assert.Equal(Batches, scan.Records.Count);
        Assert.Null(scan.TornTail);
        // The store grows its log with zeros ahead of the appends; the tests work on the records alone.
        Assert.True(log.AsSpan((int)scan.ValidLength).IndexOfAnyExcept((byte)0) < 0);
        log = log[..(int)scan.ValidLength];
        File.WriteAllBytes(logPath, log);
        return (logPath, log, scan);
    }

    [Fact]
    public void Log_cut_at_every_byte_of_the_last_record_loses_exactly_that_batch()
    {
        using var dir = new TempDir();
        var (logPath, log, scan) = Build(dir);
        var last = scan.Records[^1];
        var cuts = 0;
        for (var cut = last.RecordOffset; cut < log.Length; cut++)
        {
            File.WriteAllBytes(logPath, log.AsSpan(0, cut).ToArray());
            using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
            {
                StoreTestKit.AssertHolds(store, Seed, Batches - 1, $"cut at {cut}");
                Assert.Equal(cut > last.RecordOffset, store.OpenNotes.Any(n => n.Contains("torn tail", StringComparison.Ordinal)));
            }
            // The torn bytes were cut off durably: the file ends at the last good record.
            Assert.Equal(last.RecordOffset, new FileInfo(logPath).Length);
            cuts++;
        }
        output.WriteLine($"{cuts} cut positions in a record of {log.Length - last.RecordOffset} bytes");
        Assert.Equal(log.Length - last.RecordOffset, cuts);
    }

    [Fact]
    public void Log_garbled_at_every_byte_of_the_last_record_loses_exactly_that_batch()
    {
        using var dir = new TempDir();
        var (logPath, log, scan) = Build(dir);
        var last = scan.Records[^1];
        for (var pos = last.RecordOffset; pos < log.Length; pos++)
        {
            var bad = (byte[])log.Clone();
            bad[pos] ^= (byte)(1 << (pos % 8));
            File.WriteAllBytes(logPath, bad);
            using var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
            StoreTestKit.AssertHolds(store, Seed, Batches - 1, $"byte {pos} flipped");
            Assert.Contains(store.OpenNotes, n => n.Contains("torn tail", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void After_a_torn_tail_new_batches_append_cleanly()
    {
        using var dir = new TempDir();
        var (logPath, log, scan) = Build(dir);
        var last = scan.Records[^1];
        // Leave the torn record's header and some garbage so a later shorter record would land on top of it.
        var torn = log.AsSpan(0, last.RecordOffset + last.PayloadLength).ToArray();
        File.WriteAllBytes(logPath, torn);
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.AssertHolds(store, Seed, Batches - 1, "torn");
            StoreTestKit.Write(store, Seed, Batches, Batches + 3);
        }
        using var reopened = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
        StoreTestKit.AssertHolds(reopened, Seed, Batches + 3, "rewritten");
        Assert.Empty(reopened.OpenNotes);
    }

    [Fact]
    public void Zeros_after_the_last_record_are_space_ahead_of_the_appends_not_a_tear()
    {
        using var dir = new TempDir();
        var (logPath, log, _) = Build(dir);
        File.WriteAllBytes(logPath, [.. log, .. new byte[10_000]]);
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.AssertHolds(store, Seed, Batches, "zero tail");
            Assert.Empty(store.OpenNotes);
            // New batches go into the zeros (the file does not grow) and are found again.
            StoreTestKit.Write(store, Seed, Batches + 1, Batches + 3);
        }
        Assert.Equal(log.Length + 10_000, new FileInfo(logPath).Length);
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.AssertHolds(store, Seed, Batches + 3, "appended into the zeros");
            Assert.Empty(store.OpenNotes);
        }
        // A torn append into that space (garbage, then zeros) is still a torn tail.
        var bytes = File.ReadAllBytes(logPath);
        var valid = LogFormat.Scan(bytes, logPath).ValidLength;
        bytes[valid + 3] = 0x5a;
        File.WriteAllBytes(logPath, bytes);
        using var torn = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
        StoreTestKit.AssertHolds(torn, Seed, Batches + 3, "garbage in the zeros");
        Assert.Contains(torn.OpenNotes, n => n.Contains("torn tail", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7 })]
    [InlineData(new byte[] { 0x4D, 0x4C, 0x52, 0x31, 5, 0, 0, 0 })]
    [InlineData(new byte[] { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3 })]
    public void Garbage_after_the_last_record_is_a_torn_tail(byte[] garbage)
    {
        using var dir = new TempDir();
        var (logPath, log, _) = Build(dir);
        File.WriteAllBytes(logPath, [.. log, .. garbage]);
        using var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
        StoreTestKit.AssertHolds(store, Seed, Batches, "garbage tail");
        Assert.Contains(store.OpenNotes, n => n.Contains("torn tail", StringComparison.Ordinal));
    }

    [Fact]
    public void A_flipped_byte_in_any_middle_record_is_a_typed_corruption_error()
    {
        using var dir = new TempDir();
        var (logPath, log, scan) = Build(dir);
        var middle = scan.Records[2];
        var end = middle.PayloadOffset + middle.PayloadLength;
        for (var pos = middle.RecordOffset; pos < end; pos++)
        {
            var bad = (byte[])log.Clone();
            bad[pos] ^= 0x5a;
            File.WriteAllBytes(logPath, bad);
            var e = Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction));
            Assert.Equal(logPath, e.Path);
            Assert.Equal(middle.RecordOffset, e.Offset);
        }
        // The refusal released the lock: with the original bytes back, the store opens.
        File.WriteAllBytes(logPath, log);
        using var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction);
        StoreTestKit.AssertHolds(store, Seed, Batches, "restored");
    }

    [Fact]
    public void A_cut_in_the_middle_of_the_log_followed_by_valid_records_is_corruption()
    {
        using var dir = new TempDir();
        var (logPath, log, scan) = Build(dir);
        var r = scan.Records[1];
        // Remove a few bytes from record 1: it no longer checks, and record 2 onwards are intact behind it.
        var bad = log.AsSpan(0, r.PayloadOffset + 3).ToArray().Concat(log.AsSpan(r.PayloadOffset + 10).ToArray()).ToArray();
        File.WriteAllBytes(logPath, bad);
        var e = Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path));
        Assert.Equal(r.RecordOffset, e.Offset);
    }

    [Fact]
    public void Damaged_log_header_is_corruption()
    {
        using var dir = new TempDir();
        var (logPath, log, _) = Build(dir);
        for (var pos = 0; pos < LogFormat.HeaderSize; pos++)
        {
            var bad = (byte[])log.Clone();
            bad[pos] ^= 1;
            File.WriteAllBytes(logPath, bad);
            Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path));
        }
        File.WriteAllBytes(logPath, log.AsSpan(0, 10).ToArray());
        Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path));
    }

    [Fact]
    public void A_valid_record_out_of_sequence_is_corruption()
    {
        using var dir = new TempDir();
        var (logPath, log, scan) = Build(dir);
        var last = scan.Records[^1];
        var buffer = new ArrayBufferWriter<byte>();
        buffer.Write(log.AsSpan(0, log.Length));
        // A well-formed record that skips a sequence number.
        LogFormat.AppendRecord(buffer, last.Seq + 2, log.AsSpan(last.PayloadOffset, last.PayloadLength));
        File.WriteAllBytes(logPath, buffer.WrittenSpan.ToArray());
        var e = Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path));
        Assert.Equal(log.Length, e.Offset);
        Assert.Contains("sequence", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Damaged_snapshot_is_corruption_and_a_missing_log_beside_it_too()
    {
        using var dir = new TempDir();
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.Write(store, Seed, 1, Batches);
            store.Compact();
        }
        var snapshotPath = Path.Combine(dir.Path, "snapshot");
        var snapshot = File.ReadAllBytes(snapshotPath);
        foreach (var pos in new[] { 0, 9, snapshot.Length / 2, snapshot.Length - 1 })
        {
            var bad = (byte[])snapshot.Clone();
            bad[pos] ^= 0x10;
            File.WriteAllBytes(snapshotPath, bad);
            var e = Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path));
            Assert.Equal(snapshotPath, e.Path);
        }
        File.WriteAllBytes(snapshotPath, snapshot.AsSpan(0, snapshot.Length - 1).ToArray());
        Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path));
        File.WriteAllBytes(snapshotPath, snapshot);
        File.Delete(Path.Combine(dir.Path, "log"));
        Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path));
    }

    [Fact]
    public void A_log_that_starts_after_the_snapshot_is_corruption()
    {
        using var dir = new TempDir();
        using (var store = MonitorStore.Open(dir.Path, StoreTestKit.NoAutoCompaction))
        {
            StoreTestKit.Write(store, Seed, 1, 3);
        }
        // A log whose records begin after sequence 100 with no snapshot: 100 batches are missing.
        File.WriteAllBytes(Path.Combine(dir.Path, "log"), LogFormat.Header(100));
        var e = Assert.Throws<MonitorStoreCorruptionException>(() => MonitorStore.Open(dir.Path));
        Assert.Contains("starts after", e.Message, StringComparison.Ordinal);
    }
}
