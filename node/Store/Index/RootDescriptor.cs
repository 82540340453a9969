using System.Buffers.Binary;
using Appliance.Platform.Checksums;

namespace Appliance.Store.Index;

/// <summary>
/// What a commit returns and the store persists (checkpoint header or journal record): enough to open the tree of
/// that commit. <see cref="RootPage"/> is -1 for an empty tree. <see cref="RootCrc"/> is the root page's crc32c, so
/// opening checks that the page is the one this commit wrote (not a later reuse of its number).
/// </summary>
public readonly record struct RootDescriptor(long RootPage, int Height, long Generation, long Count, uint RootCrc)
{
    /// <summary>Encoded size: magic "IXRT" u32, version u16, height u16, root i64, generation i64, count i64,
    /// root crc u32, crc32c (seeded) of the preceding 36 bytes u32.</summary>
    public const int EncodedSize = 40;
    private const uint Magic = 0x54525849; // "IXRT"
    private const ushort Version = 1;

    /// <summary>A tree that was never committed.</summary>
    public static RootDescriptor Empty => new(-1, 0, 0, 0, 0);

    public void Encode(Span<byte> destination, uint seed)
    {
        var d = destination[..EncodedSize];
        BinaryPrimitives.WriteUInt32LittleEndian(d, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(d[4..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(d[6..], checked((ushort)Height));
        BinaryPrimitives.WriteInt64LittleEndian(d[8..], RootPage);
        BinaryPrimitives.WriteInt64LittleEndian(d[16..], Generation);
        BinaryPrimitives.WriteInt64LittleEndian(d[24..], Count);
        BinaryPrimitives.WriteUInt32LittleEndian(d[32..], RootCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(d[36..], Crc32C.Compute(d[..36], seed));
    }

    /// <summary>Decodes and checks an encoded descriptor; damage is a <see cref="CorruptionException"/>.</summary>
    public static RootDescriptor Decode(ReadOnlySpan<byte> source, uint seed)
    {
        if (source.Length < EncodedSize)
        {
            throw new CorruptionException($"index root descriptor: {source.Length} bytes, expected {EncodedSize}");
        }
        var s = source[..EncodedSize];
        if (BinaryPrimitives.ReadUInt32LittleEndian(s) != Magic)
        {
            throw new CorruptionException("index root descriptor: bad magic");
        }
        if (BinaryPrimitives.ReadUInt16LittleEndian(s[4..]) != Version)
        {
            throw new CorruptionException($"index root descriptor: unknown version {BinaryPrimitives.ReadUInt16LittleEndian(s[4..])}");
        }
        var crc = Crc32C.Compute(s[..36], seed);
        if (crc != BinaryPrimitives.ReadUInt32LittleEndian(s[36..]))
        {
            throw new CorruptionException($"index root descriptor: crc32c mismatch (stored {BinaryPrimitives.ReadUInt32LittleEndian(s[36..]):x8}, computed {crc:x8})");
        }
        var d = new RootDescriptor(BinaryPrimitives.ReadInt64LittleEndian(s[8..]), BinaryPrimitives.ReadUInt16LittleEndian(s[6..]),
            BinaryPrimitives.ReadInt64LittleEndian(s[16..]), BinaryPrimitives.ReadInt64LittleEndian(s[24..]), BinaryPrimitives.ReadUInt32LittleEndian(s[32..]));
        if (d.Generation < 0 || d.Count < 0 || (d.RootPage < 0) != (d.Height == 0) || d.RootPage < -1 || (d.RootPage < 0 && d.Count != 0))
        {
            throw new CorruptionException($"index root descriptor: fields out of range ({d})");
        }
        return d;
    }
}
