using Appliance.Platform.Checksums;
using System.Buffers;
using System.Buffers.Binary;

namespace Appliance.Monitor.Storage;

/// <summary>One valid record found by <see cref="LogFormat.Scan"/>: its sequence number and where its payload is.</summary>
internal readonly record struct LogRecord(ulong Seq, int RecordOffset, int PayloadOffset, int PayloadLength);

/// <summary>What a scan of a log file found: the records in order, how many bytes of the file they cover, and
/// whether a torn tail (an incomplete or damaged last write) follows them.</summary>
internal sealed record LogScan(ulong BaseSeq, IReadOnlyList<LogRecord> Records, long ValidLength, string? TornTail);

/// <summary>
/// The write-ahead log's bytes. A file is a header, then records appended back to back:
/// <code>
/// header (24 bytes): "APMONLOG" | u32 version (1) | u64 base sequence | u32 crc32c(previous 20 bytes)
/// record:            u32 magic "MLR1" | u32 payload length | u64 sequence | u32 crc32c(previous 16 bytes + payload) | payload
/// </code>
/// The first record's sequence is base + 1 and each next one is one more. All integers little-endian.
/// The parser is pure: it takes the file's bytes and returns what is valid, or throws
/// <see cref="MonitorStoreCorruptionException"/>.
/// </summary>
internal static class LogFormat
{
    public const int HeaderSize = 24;
    public const int RecordHeaderSize = 20;
    public const uint Version = 1;
    public const uint RecordMagic = 0x3152_4C4D; // "MLR1" little-endian
    private static ReadOnlySpan<byte> FileMagic => "APMONLOG"u8;

    /// <summary>The payload length no valid record exceeds (a batch plus its framing).</summary>
    public const int MaxPayload = WriteBatch.MaxBatchBytes + (1 << 20);

    public static byte[] Header(ulong baseSeq)
    {
        var h = new byte[HeaderSize];
        FileMagic.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), Version);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(12), baseSeq);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), Crc32C.Compute(h.AsSpan(0, 20)));
        return h;
    }

    /// <summary>Appends one framed record to <paramref name="output"/>.</summary>
    public static void AppendRecord(IBufferWriter<byte> output, ulong seq, ReadOnlySpan<byte> payload)
    {
        var span = output.GetSpan(RecordHeaderSize + payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span, RecordMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], seq);
        BinaryPrimitives.WriteUInt32LittleEndian(span[16..], Crc32C.Compute(payload, Crc32C.Compute(span[..16])));
        payload.CopyTo(span[RecordHeaderSize..]);
        output.Advance(RecordHeaderSize + payload.Length);
    }

    /// <summary>
    /// Validates a whole log file. A record that fails (short, bad magic, bad length, bad checksum) ends the valid
    /// part; if only zeros follow, that is preallocated space (not a tear); else it is a torn tail — what a crash
    /// during an append leaves — only if no valid record follows it anywhere in the file. If one does, the damage is in the middle of acknowledged data: corruption, never skipped. A valid
    /// record out of sequence is corruption too.
    /// </summary>
    public static LogScan Scan(ReadOnlySpan<byte> file, string path)
    {
        if (file.Length < HeaderSize)
        {
            throw new MonitorStoreCorruptionException(path, 0, $"log header is {file.Length} bytes, not {HeaderSize} (the log is created whole by a rename, so this is not a crash)");
        }
        if (!file[..8].SequenceEqual(FileMagic))
        {
            throw new MonitorStoreCorruptionException(path, 0, "not a monitor store log (bad magic)");
        }
        if (Crc32C.Compute(file[..20]) != BinaryPrimitives.ReadUInt32LittleEndian(file[20..]))
        {
            throw new MonitorStoreCorruptionException(path, 0, "log header checksum mismatch");
        }
        var version = BinaryPrimitives.ReadUInt32LittleEndian(file[8..]);
        if (version != Version)
        {
            throw new MonitorStoreCorruptionException(path, 8, $"log version {version}; this build reads version {Version}");
        }
        var baseSeq = BinaryPrimitives.ReadUInt64LittleEndian(file[12..]);
        var records = new List<LogRecord>();
        var pos = HeaderSize;
        var expect = baseSeq + 1;
        string? torn = null;
        while (pos < file.Length)
        {
            var why = TryRecordAt(file, pos, out var seq, out var length);
            if (why is null)
            {
                if (seq != expect)
                {
                    throw new MonitorStoreCorruptionException(path, pos, $"record has sequence {seq} where {expect} was expected");
                }
                records.Add(new LogRecord(seq, pos, pos + RecordHeaderSize, length));
                pos += RecordHeaderSize + length;
                expect++;
                continue;
            }
            if (file[pos..].IndexOfAnyExcept((byte)0) < 0)
            {
                // Zeros to the end: space the store extended the file with ahead of its appends (or an append of
                // which nothing landed). The valid part ends here; nothing was torn.
                break;
            }
            // The write at pos is damaged. A crash can only tear the last append, so a valid later record means
            // acknowledged data was damaged after the fact.
            for (var q = pos + 1; q <= file.Length - RecordHeaderSize; q++)
            {
                if (BinaryPrimitives.ReadUInt32LittleEndian(file[q..]) == RecordMagic
                    && TryRecordAt(file, q, out var laterSeq, out _) is null && laterSeq >= expect)
                {
                    throw new MonitorStoreCorruptionException(path, pos, $"record {expect} is damaged ({why}) but valid record {laterSeq} follows at offset {q}");
                }
            }
            torn = $"{why} at offset {pos}, {file.Length - pos} bytes discarded";
            break;
        }
        return new LogScan(baseSeq, records, pos, torn);
    }

    /// <summary>Null if a complete valid record starts at <paramref name="pos"/>, else why not.</summary>
    private static string? TryRecordAt(ReadOnlySpan<byte> file, int pos, out ulong seq, out int length)
    {
        seq = 0;
        length = 0;
        if (file.Length - pos < RecordHeaderSize)
        {
            return "short record header";
        }
        var header = file.Slice(pos, RecordHeaderSize);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != RecordMagic)
        {
            return "bad record magic";
        }
        var len = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        if (len > MaxPayload)
        {
            return $"record length {len} out of range";
        }
        if (len > file.Length - pos - RecordHeaderSize)
        {
            return "short record payload";
        }
        var payload = file.Slice(pos + RecordHeaderSize, (int)len);
        if (Crc32C.Compute(payload, Crc32C.Compute(header[..16])) != BinaryPrimitives.ReadUInt32LittleEndian(header[16..]))
        {
            return "record checksum mismatch";
        }
        seq = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        length = (int)len;
        return null;
    }
}
