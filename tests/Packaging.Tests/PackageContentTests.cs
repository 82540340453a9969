namespace Appliance.Packaging.Tests;

/// <summary>What `dpkg-deb -c` and `-I` show of the package, and what its maintainer scripts do when run.</summary>
[Collection("package")]
public sealed class PackageContentTests(PackageFixture package)
{
    private static readonly (string Path, string Mode)[] Expected =
    [
        ("./usr/bin/appliance", "-rwxr-xr-x"),
        ("./sbin/mount.appliance", "-rwxr-xr-x"),
        ("./usr/lib/systemd/system/appliance.target", "-rw-r--r--"),
        ("./usr/lib/systemd/system/appliance-mon@.service", "-rw-r--r--"),
        ("./usr/lib/systemd/system/appliance-osd@.service", "-rw-r--r--"),
        ("./usr/lib/systemd/system/appliance-nbd.service", "-rw-r--r--"),
        ("./usr/lib/systemd/system/appliance-fs@.service", "-rw-r--r--"),
        ("./usr/share/bash-completion/completions/appliance", "-rw-r--r--"),
        ("./usr/share/man/man1/appliance.1.gz", "-rw-r--r--"),
        ("./usr/share/man/man8/mount.appliance.8.gz", "-rw-r--r--"),
        ("./usr/share/doc/appliance/copyright", "-rw-r--r--"),
        ("./usr/share/doc/appliance/changelog.gz", "-rw-r--r--"),
        ("./usr/share/lintian/overrides/appliance", "-rw-r--r--"),
    ];

    [Fact]
    public void The_package_is_named_after_the_version_and_lists_every_file_owned_by_root()
    {
        Assert.Equal($"appliance_{package.Version}_amd64.deb", Path.GetFileName(package.Deb));
        var lines = Tool.Ok("dpkg-deb", "-c", package.Deb).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // mode owner/group size date time path
        var entries = lines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .ToDictionary(f => f[5], f => (Mode: f[0], Owner: f[1], Size: long.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture)));
        foreach (var (path, mode) in Expected)
        {
            Assert.True(entries.TryGetValue(path, out var e), $"{path} is not in the package:\n{string.Join('\n', lines)}");
            Assert.Equal(mode, e.Mode);
            Assert.True(e.Size > 0, $"{path} is empty");
        }
        Assert.All(entries, e => Assert.Equal("root/root", e.Value.Owner));
        // Nothing of the build leaks in: only the files above and their folders.
        var files = entries.Where(e => !e.Value.Mode.StartsWith('d')).Select(e => e.Key).Order(StringComparer.Ordinal);
        Assert.Equal(Expected.Select(e => e.Path).Order(StringComparer.Ordinal), files);
        // Self-contained single file: the runtime is inside it (tens of MB), no .dll beside it.
        Assert.True(entries["./usr/bin/appliance"].Size > 30L << 20, "usr/bin/appliance is too small to carry the .NET runtime");
    }

    [Fact]
    public void The_control_file_and_maintainer_scripts_are_there()
    {
        var info = Tool.Ok("dpkg-deb", "-I", package.Deb);
        foreach (var script in new[] { "postinst", "prerm", "postrm" })
        {
            Assert.Matches($@"(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+{script}\s+#!/bin/sh$", info); // * = executable
        }
        Assert.Matches(@"(?m)^\s+\d+ bytes,\s+\d+ lines\s+md5sums\s*$", info);
        string Field(string name) => Tool.Ok("dpkg-deb", "-f", package.Deb, name).Trim();
        Assert.Equal("appliance", Field("Package"));
        Assert.Equal(package.Version, Field("Version"));
        Assert.Equal("amd64", Field("Architecture"));
        Assert.Contains("libc6", Field("Depends"));
        Assert.Contains("libssl3", Field("Depends")); // loaded at run time by the runtime's crypto, not linked
        var installedKb = long.Parse(Field("Installed-Size"), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(installedKb, new FileInfo(package.InRoot("usr/bin/appliance")).Length / 1024, long.MaxValue);
        // md5sums covers every file and matches.
        var control = package.Scratch("control");
        Tool.Ok("dpkg-deb", "-e", package.Deb, control);
        var check = Tool.Run("md5sum", ["--check", "--strict", Path.Combine(control, "md5sums")], TimeSpan.FromMinutes(1), package.Root);
        Assert.True(check.ExitCode == 0, check.ToString());
        Assert.Equal(Expected.Length, check.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    /// <summary>
    /// Runs the package's own maintainer scripts as dpkg would, in a mount namespace of their own whose /etc,
    /// /var/lib, /var/log and /run are empty tmpfs (so the host is untouched), with stand-ins for systemctl and
    /// deb-systemd-invoke on PATH that record their arguments.
    /// </summary>
    [Fact]
    public void Maintainer_scripts_make_the_directories_and_talk_to_systemd_only_when_it_runs()
    {
        Assert.True(Environment.UserName == "root" || Tool.Ok("id", "-u").Trim() == "0", "this test needs root (a mount namespace); run it through scripts/test.sh");
        Tool.Require("unshare", "util-linux");
        var control = package.Scratch("scripts");
        Tool.Ok("dpkg-deb", "-e", package.Deb, control);
        var fakes = package.Scratch("fake-bin");
        foreach (var fake in new[] { "systemctl", "deb-systemd-invoke" })
        {
            File.WriteAllText(Path.Combine(fakes, fake), $"#!/bin/sh\necho \"{fake} $*\" >> /run/calls\n");
            File.SetUnixFileMode(Path.Combine(fakes, fake), (UnixFileMode)0x1ED); // 0755
        }
        string InNamespace(bool systemdRuns, string steps) => Tool.Ok("unshare", "--mount", "--propagation", "private", "sh", "-euc",
            "for d in /etc /var/lib /var/log /run; do mount -t tmpfs scratch $d; done; " +
            (systemdRuns ? "mkdir -p /run/systemd/system; " : "") +
            $"export PATH={fakes}:/usr/sbin:/usr/bin:/sbin:/bin; cd {control}; " + steps);

        // configure without systemd: directories, no systemctl.
        var without = InNamespace(false, "./postinst configure; stat -c '%n %a' /etc/appliance /var/lib/appliance /var/log/appliance; cat /run/calls 2>/dev/null || echo no-calls");
        Assert.Equal("/etc/appliance 755\n/var/lib/appliance 750\n/var/log/appliance 750\nno-calls\n", without);

        // With systemd running: daemon-reload on configure; the daemons stop on remove, not on upgrade; a purge
        // removes the directories only when they are empty (a node's keys and data stay).
        var with = InNamespace(true,
            "./postinst configure; ./prerm upgrade; echo after-upgrade >> /run/calls; ./prerm remove; ./postrm remove; " +
            "touch /etc/appliance/cluster.conf; ./postrm purge; ls -d /etc/appliance /var/lib/appliance /var/log/appliance 2>&1 || true; cat /run/calls");
        Assert.Equal(
            "ls: cannot access '/var/lib/appliance': No such file or directory\n" +
            "ls: cannot access '/var/log/appliance': No such file or directory\n" +
            "/etc/appliance\n" +
            "systemctl daemon-reload\nafter-upgrade\ndeb-systemd-invoke stop appliance.target\nsystemctl daemon-reload\nsystemctl daemon-reload\n",
            with);
    }
}
