using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using Appliance.Platform.Checksums;
using Appliance.Wire.Codec;

namespace Appliance.BlockDev.Images.Cluster;

/// <summary>
/// What an image's header object holds: its size, its object size (a power of two, 4 KiB to 16 MiB), the unique id
/// its data objects are named by, when it was created, and feature bits (none defined yet; an image with a bit this
/// release does not know is refused). Stored as the header object's data: magic, version, fields, crc32c.
/// </summary>
public sealed record ImageHeader(long Size, int ObjectOrder, string Id, DateTimeOffset Created, ulong Features)
{
    public const int MinOrder = 12;
    public const int MaxOrder = 24;
    public const int DefaultOrder = 22;
    public const ulong KnownFeatures = 0;

    private const uint Magic = 0x474d4941; // "AIMG"
    private const byte Version = 1;

    public long ObjectSize => 1L << ObjectOrder;

    /// <summary>How many data objects the image spans (the last may be partly past the end).</summary>
    public long ObjectCount => (Size + ObjectSize - 1) >> ObjectOrder;

    public byte[] Encode()
    {
        using var w = new WireWriter(96);
        w.WriteU32(Magic);
        var m = w.BeginStruct(Version, 1);
        w.WriteI64(Size);
        w.WriteU8((byte)ObjectOrder);
        w.WriteString(Id);
        w.WriteI64(Created.ToUnixTimeMilliseconds());
        w.WriteU64(Features);
        w.EndStruct(m);
        var body = w.WrittenSpan;
        var result = new byte[body.Length + 4];
        body.CopyTo(result);
        BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(body.Length), Crc32C.Compute(body));
        return result;
    }

    /// <summary>Decodes a header; <see cref="WireFormatException"/> says what is wrong with a bad one.</summary>
    public static ImageHeader Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < 8)
        {
            throw new WireFormatException($"an image header of {data.Length} bytes");
        }
        var body = data[..^4];
        if (Crc32C.Compute(body) != BinaryPrimitives.ReadUInt32LittleEndian(data[^4..]))
        {
            throw new WireFormatException("the image header fails its checksum");
        }
        var r = new WireReader(body);
        if (r.ReadU32() != Magic)
        {
            throw new WireFormatException("not an image header (bad magic)");
        }
        var s = r.BeginStruct(Version, "image header");
        var header = new ImageHeader(r.ReadI64(), r.ReadU8(), r.ReadString(64), DateTimeOffset.FromUnixTimeMilliseconds(r.ReadI64()), r.ReadU64());
        r.EndStruct(s);
        if (header.Size < 0 || header.ObjectOrder is < MinOrder or > MaxOrder)
        {
            throw new WireFormatException($"an image header with size {header.Size} and object order {header.ObjectOrder}");
        }
        return header;
    }

    /// <summary>The object order of an object size: null unless a power of two from 4 KiB to 16 MiB.</summary>
    public static int? OrderOf(long objectSize) =>
        objectSize > 0 && BitOperations.IsPow2(objectSize) && BitOperations.Log2((ulong)objectSize) is var o && o is >= MinOrder and <= MaxOrder ? o : null;
}

/// <summary>The names of an image's objects in its pool (as rbd's format 2: an id object per name, a directory, a
/// header and data objects by id).</summary>
public static class ImageObjects
{
    /// <summary>The pool's directory: omap name → id, for listing.</summary>
    public const string Directory = "image_directory";

    /// <summary>The object naming an image: its data is the image's id. Created exclusively, so a name is taken once.</summary>
    public static string IdObject(string name) => "image_id." + name;

    public static string Header(string id) => "image_header." + id;

    public static string Data(string id, long objectNumber) => "image_data." + id + "." + objectNumber.ToString("x16", CultureInfo.InvariantCulture);
}
