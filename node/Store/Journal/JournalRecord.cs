using System.Buffers.Binary;
using Appliance.Platform.Checksums;
using Appliance.Store.Format;

namespace Appliance.Store.Journal;

/// <summary>
/// A journal record: the redo entries of one group commit (one or many transactions), written as one aligned
/// device write. Layout (little-endian), header of 32 bytes then the payload, padded with zeros to 4 KiB:
/// <code>
/// 0  u32 magic "JREC"   4 u16 version   6 u16 flags (0)
/// 8  u64 seq            16 u32 payload length   20 u32 payload crc32c   24 u32 transactions   28 u32 header crc32c
/// </code>
/// Both crcs are seeded with the store's crc seed, so records of an earlier store on the same disk never validate.
/// Version 3 payload: the copy-on-write manifest (u32 run count; per run i64 first device block, u32 block count,
/// then a u32 crc32c per block), then per transaction u32 length + its redo entries (which name objects by
/// placement hash and name). Versions 1 and 2 named objects by name only; they exist only in stores of format
/// version 1, which mount refuses before reading any record. The manifest names the fresh blocks the record points at whose data was written beside the record
/// rather than before it: the record and its data are made durable by one flush, so a record that landed without
/// all of its data must not count. Replay checks the manifest of the last record (the only one that can be
/// unflushed) and discards the record as torn if any block's crc differs.
/// </summary>
internal static class JournalRecord
{
    public const uint Magic = 0x4345524A; // "JREC"
    /// <summary>The version written (with a copy-on-write manifest, objects named by hash and name).</summary>
    public const ushort Version = 3;

    /// <summary>The oldest version read.</summary>
    public const ushort OldestVersion = 3;
    public const int HeaderSize = 32;

    /// <summary>Bytes a record with this payload occupies in the journal.</summary>
    public static long SizeOnDisk(long payloadLength) =>
        (HeaderSize + payloadLength + Superblock.BlockSize - 1) / Superblock.BlockSize * Superblock.BlockSize;

    public static void WriteHeader(Span<byte> dest, ulong seq, ReadOnlySpan<byte> payload, int transactions, uint seed)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dest, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(dest[4..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(dest[6..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(dest[8..], seq);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[16..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[20..], Crc32C.Compute(payload, seed));
        BinaryPrimitives.WriteUInt32LittleEndian(dest[24..], (uint)transactions);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[28..], Crc32C.Compute(dest[..28], seed));
    }

    /// <summary>A header that passed its own checksum.</summary>
    public readonly record struct Header(ulong Seq, int PayloadLength, uint PayloadCrc, int Transactions, ushort Version = Version);

    /// <summary>Parses a header; null unless magic, version and header crc are right.</summary>
    public static Header? TryParseHeader(ReadOnlySpan<byte> block, uint seed)
    {
        if (block.Length < HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(block) != Magic
            || BinaryPrimitives.ReadUInt16LittleEndian(block[4..]) is < OldestVersion or > Version
            || Crc32C.Compute(block[..28], seed) != BinaryPrimitives.ReadUInt32LittleEndian(block[28..]))
        {
            return null;
        }
        var length = BinaryPrimitives.ReadUInt32LittleEndian(block[16..]);
        if (length > int.MaxValue - HeaderSize - Superblock.BlockSize)
        {
            return null;
        }
        return new Header(BinaryPrimitives.ReadUInt64LittleEndian(block[8..]), (int)length,
            BinaryPrimitives.ReadUInt32LittleEndian(block[20..]), (int)BinaryPrimitives.ReadUInt32LittleEndian(block[24..]),
            BinaryPrimitives.ReadUInt16LittleEndian(block[4..]));
    }

    /// <summary>Bytes of a manifest of <paramref name="blocks"/> (sorted by device block).</summary>
    public static int ManifestSize(IReadOnlyList<(long Phys, uint Crc)> blocks)
    {
        var size = 4;
        for (var i = 0; i < blocks.Count; i++)
        {
            if (i == 0 || blocks[i].Phys != blocks[i - 1].Phys + 1)
            {
                size += 12;
            }
            size += 4;
        }
        return size;
    }

    /// <summary>Writes the manifest of <paramref name="blocks"/> (sorted by device block, each once) into
    /// <paramref name="dest"/>; returns the bytes written (<see cref="ManifestSize"/>).</summary>
    public static int WriteManifest(Span<byte> dest, IReadOnlyList<(long Phys, uint Crc)> blocks)
    {
        var pos = 4;
        uint runs = 0;
        for (var i = 0; i < blocks.Count;)
        {
            var j = i + 1;
            while (j < blocks.Count && blocks[j].Phys == blocks[j - 1].Phys + 1)
            {
                j++;
            }
            BinaryPrimitives.WriteInt64LittleEndian(dest[pos..], blocks[i].Phys);
            BinaryPrimitives.WriteUInt32LittleEndian(dest[(pos + 8)..], (uint)(j - i));
            pos += 12;
            for (var k = i; k < j; k++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(dest[pos..], blocks[k].Crc);
                pos += 4;
            }
            runs++;
            i = j;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(dest, runs);
        return pos;
    }

    /// <summary>Reads a manifest: runs of (first device block, crcs). Every block must lie in
    /// [<paramref name="firstBlock"/>, <paramref name="endBlock"/>).</summary>
    public static List<(long First, uint[] Crcs)> ReadManifest(ref SpanReader r, long firstBlock, long endBlock)
    {
        var runs = (int)r.U32();
        var result = new List<(long, uint[])>(Math.Min(runs, 1024));
        for (var i = 0; i < runs; i++)
        {
            var first = r.I64();
            var count = r.U32();
            if (first < firstBlock || count == 0 || count > endBlock - first)
            {
                r.Fail($"manifest run of {count} blocks at device block {first}, outside the data area");
            }
            var crcs = new uint[count];
            for (var k = 0; k < crcs.Length; k++)
            {
                crcs[k] = r.U32();
            }
            result.Add((first, crcs));
        }
        return result;
    }
}

/// <summary>
/// A checkpoint slot's header block: magic "CKPT", version u32, generation u64, next journal seq u64 (replay starts
/// at journal offset 0 with this seq), payload length u64, payload crc32c u32, header crc32c u32 (both seeded).
/// The payload (<see cref="Meta.MetaState.EncodeCheckpoint"/>) follows in the next block.
/// </summary>
internal static class CheckpointHeader
{
    public const uint Magic = 0x54504B43; // "CKPT"
    public const uint Version = 1;

    public readonly record struct Header(ulong Generation, ulong JournalSeq, long PayloadLength, uint PayloadCrc);

    public static void Write(Span<byte> block, Header h, uint seed)
    {
        block[..Superblock.BlockSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(block, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(block[4..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(block[8..], h.Generation);
        BinaryPrimitives.WriteUInt64LittleEndian(block[16..], h.JournalSeq);
        BinaryPrimitives.WriteInt64LittleEndian(block[24..], h.PayloadLength);
        BinaryPrimitives.WriteUInt32LittleEndian(block[32..], h.PayloadCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(block[36..], Crc32C.Compute(block[..36], seed));
    }

    public static Header? TryParse(ReadOnlySpan<byte> block, uint seed)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(block) != Magic || BinaryPrimitives.ReadUInt32LittleEndian(block[4..]) != Version
            || Crc32C.Compute(block[..36], seed) != BinaryPrimitives.ReadUInt32LittleEndian(block[36..]))
        {
            return null;
        }
        return new Header(BinaryPrimitives.ReadUInt64LittleEndian(block[8..]), BinaryPrimitives.ReadUInt64LittleEndian(block[16..]),
            BinaryPrimitives.ReadInt64LittleEndian(block[24..]), BinaryPrimitives.ReadUInt32LittleEndian(block[32..]));
    }
}
