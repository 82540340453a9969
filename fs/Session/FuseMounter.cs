using System.Diagnostics;
using System.Globalization;
using Appliance.Fs.Protocol;
using Appliance.Platform.Native;

namespace Appliance.Fs.Session;

/// <summary>
/// Attaching a /dev/fuse connection to a directory and taking it away: mount(2) as root, fusermount3 otherwise
/// (it mounts for us and hands the descriptor back over a socket as SCM_RIGHTS).
/// </summary>
public static class FuseMounter
{
    private static readonly TimeSpan HelperTimeout = TimeSpan.FromSeconds(20);

    /// <summary>True when mount(2) can be used directly.</summary>
    public static bool IsRoot => Posix.getuid() == 0;

    /// <summary>Mounts with mount(2); returns the connection's descriptor.</summary>
    public static int MountKernel(string mountPoint, FuseOptions options)
    {
        var fd = Posix.open("/dev/fuse", Constants.O_RDWR);
        try
        {
            var data = string.Create(CultureInfo.InvariantCulture,
                $"fd={fd},rootmode=40000,user_id={Posix.getuid()},group_id={Posix.getgid()},max_read={FuseConstants.MaxWrite}");
            if (options.DefaultPermissions)
            {
                data += ",default_permissions";
            }
            if (options.AllowOther)
            {
                data += ",allow_other";
            }
            var flags = Constants.MS_NOSUID | Constants.MS_NODEV | (options.ReadOnly ? Constants.MS_RDONLY : 0);
            Posix.mount(options.FsName, mountPoint, "fuse." + options.Subtype, flags, data);
            return fd;
        }
        catch
        {
            Posix.close(fd);
            throw;
        }
    }

    /// <summary>Mounts through fusermount3 (for users without CAP_SYS_ADMIN); returns the connection's descriptor.</summary>
    public static int MountFusermount(string mountPoint, FuseOptions options)
    {
        var opts = $"fsname={options.FsName},subtype={options.Subtype},max_read={FuseConstants.MaxWrite}";
        if (options.DefaultPermissions)
        {
            opts += ",default_permissions";
        }
        if (options.AllowOther)
        {
            if (!IsRoot && !UserAllowOther())
            {
                throw new FuseMountException("allow_other needs `user_allow_other` in /etc/fuse.conf when mounting as a user; add it there, or mount without allow_other");
            }
            opts += ",allow_other";
        }
        opts += options.ReadOnly ? ",ro" : ",rw";
        var (ours, theirs) = Posix.socketpair();
        try
        {
            // Our end must not leak into the helper (or it would never see EOF); theirs must be inherited.
            Posix.fcntl_set_cloexec(ours, true);
            var start = new ProcessStartInfo("fusermount3") { RedirectStandardError = true, UseShellExecute = false };
            start.ArgumentList.Add("-o");
            start.ArgumentList.Add(opts);
            start.ArgumentList.Add("--");
            start.ArgumentList.Add(mountPoint);
            start.Environment["_FUSE_COMMFD"] = theirs.ToString(CultureInfo.InvariantCulture);
            using var helper = Process.Start(start) ?? throw new FuseMountException("could not start fusermount3; install the fuse3 package");
            Posix.close(theirs);
            theirs = -1;
            var stderr = helper.StandardError.ReadToEndAsync();
            var fd = Posix.recvmsg_fd(ours);
            if (!helper.WaitForExit(HelperTimeout))
            {
                helper.Kill();
                throw new FuseMountException($"fusermount3 did not finish mounting {mountPoint} within {HelperTimeout.TotalSeconds:0} s");
            }
            if (fd < 0 || helper.ExitCode != 0)
            {
                if (fd >= 0)
                {
                    Posix.close(fd);
                }
                var why = stderr.Wait(HelperTimeout) ? stderr.Result.Trim() : "";
                throw new FuseMountException($"fusermount3 could not mount {mountPoint} (exit {helper.ExitCode}): {why}");
            }
            Posix.fcntl_set_cloexec(fd, true);
            return fd;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new FuseMountException($"could not run fusermount3 ({e.Message}); install the fuse3 package");
        }
        finally
        {
            Posix.close(ours);
            if (theirs >= 0)
            {
                Posix.close(theirs);
            }
        }
    }

    /// <summary>
    /// Unmounts. Returns false when the mount was busy and was detached instead (it goes away, and the connection
    /// ends, when the last open file on it is closed). Not mounted any more counts as done.
    /// </summary>
    public static bool Unmount(string mountPoint, bool viaFusermount)
    {
        if (viaFusermount)
        {
            if (RunFusermount("-u", mountPoint))
            {
                return true;
            }
            RunFusermount("-uz", mountPoint);
            return false;
        }
        try
        {
            Posix.umount2(mountPoint, 0);
            return true;
        }
        catch (PlatformBusyException)
        {
            Posix.umount2(mountPoint, Constants.MNT_DETACH);
            return false;
        }
        catch (PlatformException e) when (e.Errno is Errno.EINVAL or Errno.ENOENT)
        {
            return true; // already unmounted (by someone else, or by an abort followed by umount)
        }
    }

    /// <summary>The connection id under /sys/fs/fuse/connections ("minor" of the mount's anonymous device), read
    /// from /proc/self/mountinfo so that it never touches the (maybe stuck) filesystem.</summary>
    public static string? ConnectionId(string mountPoint)
    {
        var full = Path.GetFullPath(mountPoint).TrimEnd('/');
        string? found = null;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && Unescape(fields[4]) == full)
            {
                var dev = fields[2].Split(':');
                if (dev.Length == 2 && uint.TryParse(dev[0], out var major) && uint.TryParse(dev[1], out var minor))
                {
                    found = ((major << 20) | minor).ToString(CultureInfo.InvariantCulture);
                }
            }
        }
        return found;
    }

    /// <summary>Aborts a connection: every pending and future request fails with ENOTCONN and the readers get
    /// ENODEV. Mounts the fusectl filesystem first if needed.</summary>
    public static void Abort(string connectionId)
    {
        const string Root = "/sys/fs/fuse/connections";
        var abort = $"{Root}/{connectionId}/abort";
        if (!File.Exists(abort))
        {
            try
            {
                Posix.mount("fusectl", Root, "fusectl", 0, null);
            }
            catch (PlatformBusyException)
            {
                // Already mounted by someone else meanwhile.
            }
        }
        File.WriteAllText(abort, "1");
    }

    private static bool UserAllowOther() =>
        File.Exists("/etc/fuse.conf") && File.ReadLines("/etc/fuse.conf").Any(l => l.Trim() == "user_allow_other");

    private static bool RunFusermount(string flags, string mountPoint)
    {
        var start = new ProcessStartInfo("fusermount3") { RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(flags);
        start.ArgumentList.Add(mountPoint);
        using var helper = Process.Start(start)!;
        helper.StandardError.ReadToEnd();
        if (!helper.WaitForExit(HelperTimeout))
        {
            helper.Kill();
            return false;
        }
        return helper.ExitCode == 0;
    }

    private static string Unescape(string field) =>
        field.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
            .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);
}

/// <summary>Mounting failed; the message says why and what to do.</summary>
public sealed class FuseMountException(string message, Exception? inner = null) : Exception(message, inner);
