using System.Buffers.Binary;
using Appliance.Platform.Checksums;

namespace Appliance.Store.Format;

/// <summary>
/// Where everything lives on the device, fixed at mkfs. All offsets are bytes, multiples of <see cref="Superblock.BlockSize"/>.
/// </summary>
public sealed record Geometry(long DeviceSize, long JournalOffset, long JournalSize, long CheckpointOffset0,
    long CheckpointOffset1, long CheckpointSize, long DataOffset, long DataBlocks)
{
    /// <summary>The first device block number of the data area (block = 4 KiB).</summary>
    public long FirstDataBlock => DataOffset / Superblock.BlockSize;

    /// <summary>One past the last data block number.</summary>
    public long EndDataBlock => FirstDataBlock + DataBlocks;

    /// <summary>Usable bytes of a checkpoint payload (the slot minus its header block).</summary>
    public long CheckpointCapacity => CheckpointSize - Superblock.BlockSize;

    /// <summary>Lays out a device: two superblock copies, the journal, two checkpoint slots, then data.</summary>
    public static Geometry For(long deviceSize, long? journalSize = null, long? checkpointSize = null)
    {
        const long b = Superblock.BlockSize;
        deviceSize -= deviceSize % b;
        static long Clamp(long v, long lo, long hi) => Math.Max(lo, Math.Min(hi, v)) / b * b;
        var journal = journalSize ?? Clamp(deviceSize / 16, 256 << 10, 256L << 20);
        var ckpt = checkpointSize ?? Clamp(deviceSize / 32, 128 << 10, 1L << 30);
        journal -= journal % b;
        ckpt -= ckpt % b;
        if (journal < 64 << 10 || ckpt < 2 * b || journal > 1L << 30)
        {
            throw new ArgumentException("the journal needs 64 KiB to 1 GiB and a checkpoint slot at least 8 KiB");
        }
        var journalOffset = 2 * b;
        var c0 = journalOffset + journal;
        var c1 = c0 + ckpt;
        var data = c1 + ckpt;
        var blocks = (deviceSize - data) / b;
        if (blocks < 16)
        {
            throw new ArgumentException($"a device of {deviceSize} bytes is too small for a store (journal {journal}, checkpoints 2 x {ckpt}); give at least {data + 16 * b} bytes");
        }
        return new Geometry(deviceSize, journalOffset, journal, c0, c1, ckpt, data, blocks);
    }
}

/// <summary>
/// The superblock, written at mkfs in two copies (device blocks 0 and 1) and never rewritten afterwards: the
/// mutable state lives in the checkpoint slots and the journal.
/// Layout (little-endian): magic "APLSTORE"(8) version u32, store uuid(16), cluster id(16), osd id i32,
/// block size u32, geometry 8 x i64, created unix ms i64, crc32c u32 over everything before it.
/// </summary>
public sealed record Superblock(Guid StoreId, Guid ClusterId, int OsdId, Geometry Geometry, DateTimeOffset Created)
{
    public const int BlockSize = 4096;
    /// <summary>The store's format: 4 keeps all metadata in the index (onodes with extent maps, collections, the
    /// data bitmap, omap; checkpoints of version 4 hold counters and the index's root; journal records of version 3,
    /// unchanged). 3 (onodes in the checkpoint), 2 (omap in the checkpoint) and 1 (objects by name only) are refused:
    /// no store of those was ever deployed beyond tests.</summary>
    public const uint Version = 4;
    public static ReadOnlySpan<byte> Magic => "APLSTORE"u8;

    /// <summary>Seed for the journal's and checkpoints' crc32c, so that records of another store (an old store on a
    /// reused disk) never validate.</summary>
    public uint CrcSeed => Crc32C.Compute(StoreId.ToByteArray());

    public void Encode(Span<byte> block)
    {
        block[..BlockSize].Clear();
        var w = new ByteWriter(160);
        w.Raw(Magic);
        w.U32(Version);
        w.Raw(StoreId.ToByteArray());
        w.Raw(ClusterId.ToByteArray());
        w.I32(OsdId);
        w.U32(BlockSize);
        var g = Geometry;
        foreach (var v in new[] { g.DeviceSize, g.JournalOffset, g.JournalSize, g.CheckpointOffset0, g.CheckpointOffset1, g.CheckpointSize, g.DataOffset, g.DataBlocks })
        {
            w.I64(v);
        }
        w.I64(Created.ToUnixTimeMilliseconds());
        w.U32(Crc32C.Compute(w.Written));
        w.Written.CopyTo(block);
    }

    /// <summary>Parses a superblock copy; null when it is not ours or fails its checksum (the reason goes to
    /// <paramref name="why"/>).</summary>
    public static Superblock? TryDecode(ReadOnlySpan<byte> block, out string why)
    {
        if (!block.StartsWith(Magic))
        {
            why = "no store magic";
            return null;
        }
        const int bodyLength = 8 + 4 + 16 + 16 + 4 + 4 + 8 * 8 + 8;
        var stored = BinaryPrimitives.ReadUInt32LittleEndian(block[bodyLength..]);
        if (Crc32C.Compute(block[..bodyLength]) != stored)
        {
            why = "superblock checksum mismatch";
            return null;
        }
        var r = new SpanReader(block[..bodyLength], "superblock");
        r.Raw(8);
        var version = r.U32();
        if (version != Version)
        {
            why = $"format version {version}, this program reads version {Version}";
            return null;
        }
        var id = new Guid(r.Raw(16));
        var cluster = new Guid(r.Raw(16));
        var osd = r.I32();
        var bs = r.U32();
        var g = new Geometry(r.I64(), r.I64(), r.I64(), r.I64(), r.I64(), r.I64(), r.I64(), r.I64());
        var created = DateTimeOffset.FromUnixTimeMilliseconds(r.I64());
        if (bs != BlockSize || g.JournalOffset != 2 * BlockSize || g.CheckpointOffset0 != g.JournalOffset + g.JournalSize
            || g.CheckpointOffset1 != g.CheckpointOffset0 + g.CheckpointSize || g.DataOffset != g.CheckpointOffset1 + g.CheckpointSize
            || g.DataOffset + g.DataBlocks * BlockSize > g.DeviceSize)
        {
            why = "superblock geometry is inconsistent";
            return null;
        }
        why = "";
        return new Superblock(id, cluster, osd, g, created);
    }
}

/// <summary>Recognises what a device already holds, so that mkfs never silently destroys data.</summary>
public static class Signatures
{
    /// <summary>Bytes to read from the start of the device to run <see cref="Detect"/>.</summary>
    public const int ProbeLength = 72 << 10;

    private static ReadOnlySpan<byte> LuksMagic => [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE];

    /// <summary>Names what the first bytes of a device hold, or null when they look unused.</summary>
    public static string? Detect(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 8 && head.StartsWith(Superblock.Magic)
            || head.Length >= Superblock.BlockSize + 8 && head[Superblock.BlockSize..].StartsWith(Superblock.Magic))
        {
            return "an appliance object store";
        }
        if (head.Length >= 6 && head.StartsWith(LuksMagic))
        {
            return "a LUKS encrypted volume";
        }
        if (head.Length >= 4 && head.StartsWith("XFSB"u8))
        {
            return "an XFS filesystem";
        }
        if (head.Length >= 1082 && BinaryPrimitives.ReadUInt16LittleEndian(head[1080..]) == 0xEF53)
        {
            return "an ext2/3/4 filesystem";
        }
        if (head.Length >= 65536 + 72 && head.Slice(65536 + 64, 8).SequenceEqual("_BHRfS_M"u8))
        {
            return "a btrfs filesystem";
        }
        if (head.Length >= 520 && head.Slice(512, 8).SequenceEqual("EFI PART"u8))
        {
            return "a GPT partition table";
        }
        if (head.Length >= 4096 && head.Slice(4086, 10).SequenceEqual("SWAPSPACE2"u8))
        {
            return "a swap area";
        }
        if (head.Length >= 512 && head[510] == 0x55 && head[511] == 0xAA)
        {
            return "an MBR partition table or boot sector";
        }
        return null;
    }
}
