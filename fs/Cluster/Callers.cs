using System.Globalization;
using Appliance.Fs.Api;
using Appliance.Fs.Meta;

namespace Appliance.Fs.Cluster;

/// <summary>
/// The caller of a FUSE request as the metadata operations see it: uid, gid and supplementary groups. The kernel
/// sends uid, gid and pid only; the groups come from /proc/PID/status (Groups:). Root needs none (it passes every
/// check but execute, which groups do not change), and a process gone by then is taken with its primary group only.
/// </summary>
public static class Callers
{
    public static Caller Of(FuseContext ctx) => ctx.Uid == 0 ? new Caller(0, ctx.Gid, []) : new Caller(ctx.Uid, ctx.Gid, GroupsOf(ctx.Pid));

    public static IReadOnlyList<uint> GroupsOf(uint pid)
    {
        if (pid == 0)
        {
            return [];
        }
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("Groups:", StringComparison.Ordinal))
                {
                    return [.. line[7..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries).Select(g => uint.Parse(g, CultureInfo.InvariantCulture))];
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return [];
    }
}
