using System.Buffers.Binary;
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
/// The payload is, per transaction, u32 length + its redo entries.
/// </summary>
internal static class JournalRecord
{
    public const uint Magic = 0x4345524A; // "JREC"
    public const ushort Version = 1;
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
    public readonly record struct Header(ulong Seq, int PayloadLength, uint PayloadCrc, int Transactions);

    /// <summary>Parses a header; null unless magic, version and header crc are right.</summary>
    public static Header? TryParseHeader(ReadOnlySpan<byte> block, uint seed)
    {
        if (block.Length < HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(block) != Magic
            || BinaryPrimitives.ReadUInt16LittleEndian(block[4..]) != Version
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
            BinaryPrimitives.ReadUInt32LittleEndian(block[20..]), (int)BinaryPrimitives.ReadUInt32LittleEndian(block[24..]));
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
