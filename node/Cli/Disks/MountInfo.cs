using System.Globalization;
using System.Text;

namespace Appliance.Cli.Disks;

/// <summary>One line of /proc/self/mountinfo: the device's major:minor, where it is mounted, the filesystem type and
/// the mount source.</summary>
public sealed record MountEntry(uint Major, uint Minor, string MountPoint, string FsType, string Source);

/// <summary>
/// /proc/self/mountinfo, parsed (proc(5): "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": mount id,
/// parent id, major:minor, root, mount point, options, optional fields ended by "-", type, source, super options;
/// spaces, tabs, newlines and backslashes in paths are written as octal escapes like \040).
/// </summary>
public static class MountInfo
{
    public static IReadOnlyList<MountEntry> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var entries = new List<MountEntry>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(' ');
            var dash = fields.Length < 7 ? -1 : Array.IndexOf(fields, "-", 6);
            if (dash < 0 || dash + 2 >= fields.Length)
            {
                continue;
            }
            var dev = fields[2].Split(':');
            if (dev.Length != 2 || !uint.TryParse(dev[0], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
                || !uint.TryParse(dev[1], NumberStyles.None, CultureInfo.InvariantCulture, out var minor))
            {
                continue;
            }
            entries.Add(new MountEntry(major, minor, Unescape(fields[4]), fields[dash + 1], Unescape(fields[dash + 2])));
        }
        return entries;
    }

    /// <summary>The mounts of any of <paramref name="devices"/> (major, minor), or whose source is one of
    /// <paramref name="paths"/> (compared as given: pass resolved paths).</summary>
    public static IReadOnlyList<MountEntry> Matching(IReadOnlyList<MountEntry> entries, IReadOnlyCollection<(uint Major, uint Minor)> devices, IReadOnlyCollection<string> paths) =>
        [.. entries.Where(e => devices.Contains((e.Major, e.Minor)) || paths.Contains(e.Source))];

    /// <summary>Undoes the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash).</summary>
    public static string Unescape(string field)
    {
        ArgumentNullException.ThrowIfNull(field);
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }
        var bytes = new List<byte>(field.Length);
        var raw = Encoding.UTF8.GetBytes(field);
        for (var i = 0; i < raw.Length; i++)
        {
            if (raw[i] == '\\' && i + 3 < raw.Length && IsOctal(raw[i + 1]) && IsOctal(raw[i + 2]) && IsOctal(raw[i + 3]))
            {
                bytes.Add((byte)(((raw[i + 1] - '0') << 6) | ((raw[i + 2] - '0') << 3) | (raw[i + 3] - '0')));
                i += 3;
            }
            else
            {
                bytes.Add(raw[i]);
            }
        }
        return Encoding.UTF8.GetString([.. bytes]);
    }

    private static bool IsOctal(byte c) => c is >= (byte)'0' and <= (byte)'7';
}
