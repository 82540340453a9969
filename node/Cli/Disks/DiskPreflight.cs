using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Appliance.Store.Format;

namespace Appliance.Cli.Disks;

/// <summary>What a finding means for `disk add`.</summary>
public enum FindingKind
{
    /// <summary>A signature of something else (a filesystem, a partition table, LVM, RAID, another cluster's
    /// store): refused unless --wipe, which zeroes <see cref="DiskFinding.Wipe"/>.</summary>
    Signature,
    /// <summary>A store of this cluster: already an OSD. The command decides with the osdmap whether it may go.</summary>
    OwnStore,
    /// <summary>Mounted, used as swap, held by the kernel or another process: never wiped.</summary>
    InUse,
}

/// <summary>A byte range to zero.</summary>
public readonly record struct ByteRange(long Offset, int Length);

/// <summary>One thing found on a disk: what (for the user), where, and what --wipe would zero.</summary>
public sealed record DiskFinding(FindingKind Kind, string What, string Where, IReadOnlyList<ByteRange> Wipe)
{
    /// <summary>The store's superblock, for <see cref="FindingKind.OwnStore"/> and another cluster's store.</summary>
    public Superblock? Store { get; init; }

    public override string ToString() => Where.Length == 0 ? What : $"{What} ({Where})";
}

/// <summary>
/// The pure part of `disk add`'s preflight: what the first and last bytes of a disk hold. Probes what blkid/wipefs
/// look at for the things a disk added by mistake most often holds: our own store (two superblock copies at 0 and
/// 4 KiB), partition tables (MBR at 510, GPT "EFI PART" at LBA 1 for 512- and 4096-byte sectors, and the backup GPT
/// header in the last LBA), filesystems (ext2/3/4, XFS, btrfs, vfat, swap), LUKS, LVM ("LABELONE" in one of the first
/// four sectors) and md RAID (superblock 0.90 and 1.0 near the end, 1.1 at 0, 1.2 at 4 KiB). Each finding names the
/// range --wipe zeroes: the signature's sector or block, so nothing recognises the disk afterwards.
/// </summary>
public static class DiskPreflight
{
    /// <summary>How many bytes of the start and of the end to read (btrfs's superblock is at 64 KiB; md 0.90's up to
    /// 128 KiB before the end).</summary>
    public const int ProbeBytes = 1 << 20;

    public const uint MdMagic = 0xa92b4efc;

    /// <summary>Inspects a disk of <paramref name="size"/> bytes from its first bytes <paramref name="head"/> and its
    /// last bytes <paramref name="tail"/> (they may overlap on a small disk). <paramref name="cluster"/> is this
    /// cluster's fsid: a store of it is <see cref="FindingKind.OwnStore"/>, of another a signature.</summary>
    public static IReadOnlyList<DiskFinding> Inspect(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail, long size, Guid cluster)
    {
        var bytes = new Bytes(head, tail, size);
        var found = new List<DiskFinding>();
        Store(bytes, cluster, found);
        Filesystems(bytes, found);
        PartitionTables(bytes, found);
        Lvm(bytes, found);
        Md(bytes, found);
        return found;
    }

    private static void Store(Bytes b, Guid cluster, List<DiskFinding> found)
    {
        foreach (var at in new long[] { 0, Superblock.BlockSize })
        {
            var block = b.At(at, Superblock.BlockSize);
            if (!block.StartsWith(Superblock.Magic))
            {
                continue;
            }
            var wipe = new[] { new ByteRange(0, 2 * Superblock.BlockSize) };
            var where = $"superblock at byte {at}";
            if (Superblock.TryDecode(block, out var why) is not { } sb)
            {
                found.Add(new DiskFinding(FindingKind.Signature, $"a damaged appliance object store ({why})", where, wipe));
            }
            else if (sb.ClusterId == cluster)
            {
                found.Add(new DiskFinding(FindingKind.OwnStore, $"osd.{sb.OsdId} of this cluster", where, wipe) { Store = sb });
            }
            else
            {
                found.Add(new DiskFinding(FindingKind.Signature, $"the store of osd.{sb.OsdId} of another cluster (fsid {sb.ClusterId})", where, wipe) { Store = sb });
            }
            return;
        }
    }

    private static void Filesystems(Bytes b, List<DiskFinding> found)
    {
        var sb = b.At(1024, 1024);
        if (sb.Length == 1024 && BinaryPrimitives.ReadUInt16LittleEndian(sb[56..]) == 0xEF53)
        {
            var compat = BinaryPrimitives.ReadUInt32LittleEndian(sb[0x5C..]);
            var incompat = BinaryPrimitives.ReadUInt32LittleEndian(sb[0x60..]);
            // ext4 features: extents, 64bit, flex_bg; ext3: a journal.
            var kind = (incompat & (0x40 | 0x80 | 0x200)) != 0 ? "ext4" : (compat & 0x4) != 0 ? "ext3" : "ext2";
            found.Add(new DiskFinding(FindingKind.Signature, $"an {kind} filesystem", "magic 0xEF53 at byte 1080", [new ByteRange(1024, 1024)]));
        }
        if (b.At(0, 4).SequenceEqual("XFSB"u8))
        {
            found.Add(new DiskFinding(FindingKind.Signature, "an XFS filesystem", "magic XFSB at byte 0", [new ByteRange(0, 512)]));
        }
        if (b.At(65536 + 64, 8).SequenceEqual("_BHRfS_M"u8))
        {
            found.Add(new DiskFinding(FindingKind.Signature, "a btrfs filesystem", "magic _BHRfS_M at byte 65600", [new ByteRange(65536, 4096)]));
        }
        foreach (var page in new[] { 4096, 8192, 16384, 65536 })
        {
            var magic = b.At(page - 10, 10);
            if (magic.SequenceEqual("SWAPSPACE2"u8) || magic.SequenceEqual("SWAP-SPACE"u8))
            {
                found.Add(new DiskFinding(FindingKind.Signature, "a swap area", $"magic {Encoding.ASCII.GetString(magic)} at byte {page - 10}", [new ByteRange(0, page)]));
                break;
            }
        }
        if (b.At(0, 6).SequenceEqual((ReadOnlySpan<byte>)[0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]))
        {
            found.Add(new DiskFinding(FindingKind.Signature, "a LUKS encrypted volume", "magic LUKS at byte 0", [new ByteRange(0, 4096)]));
        }
        if (IsVfat(b))
        {
            found.Add(new DiskFinding(FindingKind.Signature, "a vfat filesystem", "boot sector with a FAT label at byte 0", [new ByteRange(0, 512)]));
        }
    }

    private static bool IsVfat(Bytes b)
    {
        var boot = b.At(0, 512);
        return boot.Length == 512 && boot[510] == 0x55 && boot[511] == 0xAA
            && (boot[54..59].SequenceEqual("FAT12"u8) || boot[54..59].SequenceEqual("FAT16"u8) || boot[82..87].SequenceEqual("FAT32"u8) || boot[54..57].SequenceEqual("FAT"u8));
    }

    private static void PartitionTables(Bytes b, List<DiskFinding> found)
    {
        var gpt = false;
        foreach (var sector in new[] { 512, 4096 })
        {
            if (b.At(sector, 8).SequenceEqual("EFI PART"u8))
            {
                found.Add(new DiskFinding(FindingKind.Signature, "a GPT partition table", $"header \"EFI PART\" at byte {sector} (LBA 1 of {sector}-byte sectors)", [new ByteRange(sector, sector)]));
                gpt = true;
            }
            var last = (b.Size / sector - 1) * sector;
            if (last > sector && b.At(last, 8).SequenceEqual("EFI PART"u8))
            {
                found.Add(new DiskFinding(FindingKind.Signature, gpt ? "a GPT partition table's backup header" : "a backup GPT header (the primary is gone)",
                    $"\"EFI PART\" at byte {last.ToString(CultureInfo.InvariantCulture)}, the last {sector}-byte sector", [new ByteRange(last, sector)]));
            }
        }
        var mbr = b.At(0, 512);
        if (mbr.Length == 512 && mbr[510] == 0x55 && mbr[511] == 0xAA && !IsVfat(b))
        {
            var types = new List<byte>();
            for (var i = 0; i < 4; i++)
            {
                var type = mbr[446 + (16 * i) + 4];
                if (type != 0)
                {
                    types.Add(type);
                }
            }
            var what = types.Contains(0xEE) ? "a protective MBR (GPT)"
                : types.Count == 0 ? "an MBR boot sector (no partitions)"
                : $"an MBR partition table ({types.Count} partition{(types.Count == 1 ? "" : "s")}, types {string.Join(",", types.Select(t => "0x" + t.ToString("x2", CultureInfo.InvariantCulture)))})";
            found.Add(new DiskFinding(FindingKind.Signature, what, "signature 0x55AA at byte 510", [new ByteRange(446, 66)]));
        }
    }

    private static void Lvm(Bytes b, List<DiskFinding> found)
    {
        for (var sector = 0; sector < 4; sector++)
        {
            if (b.At(sector * 512, 8).SequenceEqual("LABELONE"u8))
            {
                found.Add(new DiskFinding(FindingKind.Signature, "an LVM physical volume", $"label LABELONE at byte {sector * 512}", [new ByteRange(sector * 512, 512)]));
                return;
            }
        }
    }

    private static void Md(Bytes b, List<DiskFinding> found)
    {
        var places = new List<(long Offset, string Version)> { (0, "1.1"), (4096, "1.2") };
        if (b.Size >= 128 << 10)
        {
            places.Add(((b.Size & ~((64L << 10) - 1)) - (64L << 10), "0.90"));
            places.Add(((b.Size - 8192) & ~4095L, "1.0"));
        }
        foreach (var (offset, version) in places)
        {
            var magic = b.At(offset, 4);
            if (magic.Length == 4 && BinaryPrimitives.ReadUInt32LittleEndian(magic) == MdMagic)
            {
                found.Add(new DiskFinding(FindingKind.Signature, $"an md RAID member (superblock {version})",
                    $"magic 0xa92b4efc at byte {offset.ToString(CultureInfo.InvariantCulture)}", [new ByteRange(offset, 4096)]));
            }
        }
    }

    /// <summary>The bytes known of the disk: the head at 0 and the tail ending at its size.</summary>
    private readonly ref struct Bytes(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail, long size)
    {
        private readonly ReadOnlySpan<byte> _head = head;
        private readonly ReadOnlySpan<byte> _tail = tail;

        public long Size { get; } = size;

        /// <summary><paramref name="length"/> bytes at <paramref name="offset"/>, or empty when not read (or past the end).</summary>
        public ReadOnlySpan<byte> At(long offset, int length)
        {
            if (offset < 0 || offset + length > Size)
            {
                return [];
            }
            if (offset + length <= _head.Length)
            {
                return _head.Slice((int)offset, length);
            }
            var tailStart = Size - _tail.Length;
            return offset >= tailStart ? _tail.Slice((int)(offset - tailStart), length) : [];
        }
    }
}
