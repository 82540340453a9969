using System.Buffers.Binary;
using Appliance.Cli.Disks;
using Appliance.Platform.Devices;
using Appliance.Store;

namespace Appliance.Cli.Tests.Disks;

/// <summary>
/// `disk add`'s preflight (node/Cli/Disks) over disk files made by the real tools where Debian has them in the test
/// packages (mkfs.ext4, parted, mkswap, our own mkfs), and over signatures written at the documented offsets where
/// it does not (md, LVM, btrfs, XFS, vfat: mdadm, lvm2, btrfs-progs, xfsprogs and dosfstools are not test packages).
/// </summary>
public sealed class DiskPreflightTests : IDisposable
{
    private const long Size = 64 << 20;
    private readonly TempDir _dir = new();
    private static readonly Guid Ours = Guid.NewGuid();

    private static IReadOnlyList<DiskFinding> Inspect(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var n = Math.Min(DiskPreflight.ProbeBytes, bytes.Length);
        return DiskPreflight.Inspect(bytes.AsSpan(0, n), bytes.AsSpan(bytes.Length - n), bytes.Length, Ours);
    }

    [Fact]
    public void A_blank_disk_holds_nothing()
    {
        Assert.Empty(Inspect(DiskTools.Sparse(_dir.File("blank"), Size)));
    }

    [Fact]
    public async Task An_ext4_filesystem_is_found_by_its_magic_at_1080()
    {
        var path = DiskTools.Sparse(_dir.File("ext4"), Size);
        await DiskTools.Ext4Async(path);
        var f = Assert.Single(Inspect(path));
        Assert.Equal(FindingKind.Signature, f.Kind);
        Assert.Equal("an ext4 filesystem", f.What);
        Assert.Contains("1080", f.Where);
        Assert.Contains(f.Wipe, r => r.Offset <= 1080 && r.Offset + r.Length >= 1082);
    }

    [Fact]
    public async Task A_GPT_is_found_at_LBA_1_and_its_backup_in_the_last_sector_even_alone()
    {
        var path = DiskTools.Sparse(_dir.File("gpt"), Size);
        await DiskTools.PartedAsync(path, "mklabel", "gpt", "mkpart", "data", "1MiB", "20MiB");
        var found = Inspect(path);
        Assert.Contains(found, f => f.What == "a GPT partition table" && f.Where.Contains("byte 512", StringComparison.Ordinal));
        Assert.Contains(found, f => f.What.Contains("backup header", StringComparison.Ordinal) && f.Where.Contains((Size - 512).ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
        Assert.Contains(found, f => f.What == "a protective MBR (GPT)");

        // The primary and the protective MBR gone (a half-done wipe): the backup at the end still refuses the disk.
        using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            f.Write(new byte[4096]);
        }
        var left = Assert.Single(Inspect(path));
        Assert.Equal("a backup GPT header (the primary is gone)", left.What);
    }

    [Fact]
    public async Task An_MBR_partition_table_is_found_and_counted()
    {
        var path = DiskTools.Sparse(_dir.File("mbr"), Size);
        await DiskTools.PartedAsync(path, "mklabel", "msdos", "mkpart", "primary", "1MiB", "10MiB", "mkpart", "primary", "10MiB", "20MiB");
        var f = Assert.Single(Inspect(path));
        Assert.StartsWith("an MBR partition table (2 partitions", f.What);
        Assert.Contains("510", f.Where);
    }

    [Fact]
    public async Task A_swap_area_is_found()
    {
        var path = DiskTools.Sparse(_dir.File("swap"), Size);
        await DiskTools.RunAsync("mkswap", "util-linux", path);
        Assert.Contains(Inspect(path), f => f.What == "a swap area");
    }

    [Fact]
    public async Task A_store_of_this_cluster_is_its_OSD_and_one_of_another_cluster_is_a_signature()
    {
        var path = DiskTools.Sparse(_dir.File("store"), Size);
        await using (var device = FileDevice.Open(path))
        {
            await ObjectStore.MkfsAsync(device, new MkfsOptions { OsdId = 7, ClusterId = Ours });
        }
        var own = Assert.Single(Inspect(path));
        Assert.Equal(FindingKind.OwnStore, own.Kind);
        Assert.Equal("osd.7 of this cluster", own.What);
        Assert.Equal(7, own.Store!.OsdId);

        var other = DiskTools.Sparse(_dir.File("other"), Size);
        var theirs = Guid.NewGuid();
        await using (var device = FileDevice.Open(other))
        {
            await ObjectStore.MkfsAsync(device, new MkfsOptions { OsdId = 3, ClusterId = theirs });
        }
        var foreign = Assert.Single(Inspect(other));
        Assert.Equal(FindingKind.Signature, foreign.Kind);
        Assert.Equal($"the store of osd.3 of another cluster (fsid {theirs})", foreign.What);
        Assert.Contains(foreign.Wipe, r => r.Offset == 0 && r.Length >= 8192);
    }

    [Theory]
    [InlineData(0L, "1.1")]
    [InlineData(4096L, "1.2")]
    [InlineData(-8192L, "1.0")]
    [InlineData(-65536L, "0.90")]
    public void An_md_superblock_is_found_at_each_place_mdadm_writes_one(long offset, string version)
    {
        var disk = new byte[Size];
        var at = offset >= 0 ? offset : Size + offset;
        BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan((int)at), DiskPreflight.MdMagic);
        var found = DiskPreflight.Inspect(disk.AsSpan(0, DiskPreflight.ProbeBytes), disk.AsSpan((int)Size - DiskPreflight.ProbeBytes), Size, Ours);
        var f = Assert.Single(found);
        Assert.Equal($"an md RAID member (superblock {version})", f.What);
        Assert.Equal(at, f.Wipe.Single().Offset);
    }

    [Theory]
    [InlineData(0, "LABELONE", "an LVM physical volume")]
    [InlineData(512, "LABELONE", "an LVM physical volume")]
    [InlineData(1536, "LABELONE", "an LVM physical volume")]
    [InlineData(0, "XFSB", "an XFS filesystem")]
    [InlineData(65600, "_BHRfS_M", "a btrfs filesystem")]
    public void Signatures_without_a_test_package_are_found_at_their_offsets(int offset, string magic, string what)
    {
        var head = new byte[DiskPreflight.ProbeBytes];
        System.Text.Encoding.ASCII.GetBytes(magic).CopyTo(head, offset);
        Assert.Equal(what, Assert.Single(DiskPreflight.Inspect(head, new byte[4096], Size, Ours)).What);
        // Past the fourth sector is no LVM label.
        if (magic == "LABELONE")
        {
            var late = new byte[DiskPreflight.ProbeBytes];
            System.Text.Encoding.ASCII.GetBytes(magic).CopyTo(late, 2048);
            Assert.Empty(DiskPreflight.Inspect(late, new byte[4096], Size, Ours));
        }
    }

    [Fact]
    public void A_vfat_boot_sector_is_a_filesystem_not_a_partition_table()
    {
        var head = new byte[DiskPreflight.ProbeBytes];
        head[0] = 0xEB;
        head[1] = 0x58;
        head[2] = 0x90;
        "FAT32   "u8.CopyTo(head.AsSpan(82));
        head[510] = 0x55;
        head[511] = 0xAA;
        Assert.Equal("a vfat filesystem", Assert.Single(DiskPreflight.Inspect(head, new byte[4096], Size, Ours)).What);
    }

    [Fact]
    public void Mountinfo_is_parsed_with_its_escapes_and_matched_by_device_number_or_source()
    {
        const string text = """
            21 26 0:20 / /proc rw,relatime - proc proc rw
            36 35 98:0 /mnt1 /mnt/with\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue
            40 26 7:3 / /srv/disk rw,relatime shared:5 - ext4 /dev/loop3 rw
            41 26 253:1 / /data rw - xfs /dev/mapper/vg-data rw
            bad line
            """;
        var entries = MountInfo.Parse(text);
        Assert.Equal(4, entries.Count);
        Assert.Equal("/mnt/with space", entries[1].MountPoint);
        Assert.Equal(new MountEntry(7, 3, "/srv/disk", "ext4", "/dev/loop3"), entries[2]);

        var byDevice = Assert.Single(MountInfo.Matching(entries, [(7u, 3u)], []));
        Assert.Equal("/srv/disk", byDevice.MountPoint);
        var bySource = Assert.Single(MountInfo.Matching(entries, [], ["/dev/mapper/vg-data"]));
        Assert.Equal("/data", bySource.MountPoint);
        Assert.Empty(MountInfo.Matching(entries, [(7u, 4u)], ["/dev/loop4"]));
    }

    public void Dispose() => _dir.Dispose();
}
