using System.Globalization;
using Appliance.Platform.Devices;
using Appliance.Platform.Native;

namespace Appliance.Cli.Disks;

/// <summary>What <see cref="DiskProbe"/> found on one disk.</summary>
/// <param name="Path">The disk as given.</param>
/// <param name="Resolved">Its real path (symlinks resolved).</param>
/// <param name="Kind">A block device or a regular file.</param>
/// <param name="Size">Its usable size in bytes.</param>
/// <param name="Locked">Another process holds the disk's lock (a running OSD opens its disk with flock).</param>
/// <param name="Findings">What the preflight found, the disk's contents first, then its uses.</param>
internal sealed record ProbeResult(string Path, string Resolved, DeviceKind Kind, long Size, bool Locked, IReadOnlyList<DiskFinding> Findings);

/// <summary>
/// The side of `disk add`'s preflight that looks at the machine: reads the disk's first and last
/// <see cref="DiskPreflight.ProbeBytes"/> (read-only, without taking its lock), asks whether another process holds
/// its lock, and finds its mounts in /proc/self/mountinfo — by its device number and its partitions' (from
/// /sys/dev/block), and for a file by the loop devices it backs (/sys/block/loop*/loop/backing_file) — its swap use
/// (/proc/swaps) and its holders (device-mapper, md). For a block device the kernel's own answer is asked too: an
/// O_EXCL open fails with EBUSY while the disk is mounted or held.
/// </summary>
internal static class DiskProbe
{
    public static async Task<ProbeResult> ProbeAsync(string path, Guid cluster, CancellationToken ct)
    {
        var resolved = Path.GetFullPath(new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? path);
        var st = Posix.statx(resolved);
        var findings = new List<DiskFinding>();
        var devices = new List<(uint, uint, string)>();
        if (st.IsBlockDevice)
        {
            devices.Add((st.stx_rdev_major, st.stx_rdev_minor, resolved));
            devices.AddRange(Partitions(st.stx_rdev_major, st.stx_rdev_minor));
            foreach (var (major, minor, name) in devices)
            {
                foreach (var holder in Holders(major, minor))
                {
                    findings.Add(new DiskFinding(FindingKind.InUse, $"held by /dev/{holder}", $"{name} is part of it (device-mapper, LVM or md); remove that first", []));
                }
            }
        }
        else if (st.IsRegularFile)
        {
            foreach (var (major, minor, loop) in LoopsBackedBy(resolved))
            {
                devices.Add((major, minor, loop));
                findings.Add(new DiskFinding(FindingKind.InUse, $"attached to {loop}", $"detach it with `losetup -d {loop}`", []));
            }
        }
        var mounts = MountInfo.Matching(MountInfo.Parse(ReadOr("/proc/self/mountinfo")),
            [.. devices.Select(d => (d.Item1, d.Item2))], [resolved, .. devices.Select(d => d.Item3)]);
        foreach (var m in mounts)
        {
            var via = devices.FirstOrDefault(d => d.Item1 == m.Major && d.Item2 == m.Minor).Item3 ?? m.Source;
            findings.Add(new DiskFinding(FindingKind.InUse, $"mounted at {m.MountPoint}", $"{via}, {m.FsType}; unmount it first", []));
        }
        foreach (var swap in Swaps().Where(s => s == resolved || devices.Any(d => d.Item3 == s)))
        {
            findings.Add(new DiskFinding(FindingKind.InUse, "in use as swap", $"{swap}; swapoff it first", []));
        }
        if (st.IsBlockDevice && mounts.Count == 0 && !findings.Any(f => f.Kind == FindingKind.InUse) && KernelHolds(resolved))
        {
            findings.Add(new DiskFinding(FindingKind.InUse, "held open exclusively by the kernel", "mounted in another namespace, or part of md/LVM/device-mapper", []));
        }

        bool locked;
        FileDevice device;
        try
        {
            device = FileDevice.Open(resolved, new FileDeviceOptions { ReadOnly = true, Exclusive = true, QueueDepth = 4 });
            locked = false;
        }
        catch (DeviceInUseException)
        {
            device = FileDevice.Open(resolved, new FileDeviceOptions { ReadOnly = true, Exclusive = false, QueueDepth = 4 });
            locked = true;
        }
        await using (device)
        {
            var n = (int)Math.Min(DiskPreflight.ProbeBytes, device.Size);
            using var head = new AlignedBuffer(n, device.MemoryAlignment);
            using var tail = new AlignedBuffer(n, device.MemoryAlignment);
            await device.ReadAsync(0, head.Memory, ct);
            await device.ReadAsync(device.Size - n, tail.Memory, ct);
            findings.InsertRange(0, DiskPreflight.Inspect(head.GetSpan(), tail.GetSpan(), device.Size, cluster));
            return new ProbeResult(path, resolved, device.Kind, device.Size, locked, findings);
        }
    }

    /// <summary>Zeroes the ranges of <paramref name="findings"/> (read-modify-write of the aligned blocks around
    /// each) and flushes. The disk's lock is held meanwhile, so no OSD starts on it halfway.</summary>
    public static async Task WipeAsync(string path, IEnumerable<DiskFinding> findings, CancellationToken ct)
    {
        await using var device = FileDevice.Open(path, new FileDeviceOptions { QueueDepth = 4 });
        var block = Math.Max(device.BlockSize, 4096);
        foreach (var range in findings.SelectMany(f => f.Wipe))
        {
            var start = range.Offset / block * block;
            var end = Math.Min(device.Size, (range.Offset + range.Length + block - 1) / block * block);
            using var buffer = new AlignedBuffer((int)(end - start), device.MemoryAlignment);
            await device.ReadAsync(start, buffer.Memory, ct);
            buffer.GetSpan().Slice((int)(range.Offset - start), (int)Math.Min(range.Length, end - range.Offset)).Clear();
            await device.WriteAsync(start, buffer.Memory, ct);
        }
        await device.FlushAsync(ct);
    }

    /// <summary>The partitions of block device major:minor, from /sys/dev/block/M:m/*/partition.</summary>
    private static IEnumerable<(uint, uint, string)> Partitions(uint major, uint minor)
    {
        var dir = $"/sys/dev/block/{major.ToString(CultureInfo.InvariantCulture)}:{minor.ToString(CultureInfo.InvariantCulture)}";
        if (!Directory.Exists(dir))
        {
            yield break;
        }
        foreach (var sub in Directory.EnumerateDirectories(dir))
        {
            if (File.Exists(Path.Combine(sub, "partition")) && ParseDev(ReadOr(Path.Combine(sub, "dev"))) is { } dev)
            {
                yield return (dev.Major, dev.Minor, "/dev/" + Path.GetFileName(sub));
            }
        }
    }

    private static IEnumerable<string> Holders(uint major, uint minor)
    {
        var dir = $"/sys/dev/block/{major.ToString(CultureInfo.InvariantCulture)}:{minor.ToString(CultureInfo.InvariantCulture)}/holders";
        return Directory.Exists(dir) ? Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).OfType<string>() : [];
    }

    /// <summary>The loop devices whose backing file is <paramref name="file"/>.</summary>
    private static IEnumerable<(uint, uint, string)> LoopsBackedBy(string file)
    {
        if (!Directory.Exists("/sys/block"))
        {
            yield break;
        }
        foreach (var loop in Directory.EnumerateFileSystemEntries("/sys/block", "loop*"))
        {
            var backing = ReadOr(Path.Combine(loop, "loop", "backing_file")).TrimEnd('\n');
            if (backing == file && ParseDev(ReadOr(Path.Combine(loop, "dev"))) is { } dev)
            {
                yield return (dev.Major, dev.Minor, "/dev/" + Path.GetFileName(loop));
            }
        }
    }

    private static IEnumerable<string> Swaps() =>
        ReadOr("/proc/swaps").Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(l => MountInfo.Unescape(l.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[0]));

    /// <summary>Whether an O_EXCL open of block device <paramref name="path"/> fails with EBUSY.</summary>
    private static bool KernelHolds(string path)
    {
        try
        {
            Posix.close(Posix.open(path, Constants.O_RDONLY | Constants.O_EXCL));
            return false;
        }
        catch (PlatformBusyException)
        {
            return true;
        }
    }

    private static (uint Major, uint Minor)? ParseDev(string text)
    {
        var parts = text.Trim().Split(':');
        return parts.Length == 2 && uint.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
            && uint.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var minor) ? (major, minor) : null;
    }

    private static string ReadOr(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }
}
