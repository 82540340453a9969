namespace Appliance.Packaging.Tests;

/// <summary>
/// The systemd units of the package. `systemd-analyze verify` runs here without a running systemd (PID 1 is not
/// systemd in a container): with --root pointing at a temporary root that holds the host's units (the targets ours
/// name), the unpacked package (so /usr/bin/appliance exists) and mkdir (ExecStartPre), and --man=no (the man pages
/// of Documentation= need not be installed). It prints every complaint on standard error, including those that do
/// not change its exit status (unknown keys, bad values), so the tests want both a zero exit and silence.
/// </summary>
[Collection("package")]
public sealed class UnitFileTests(PackageFixture package)
{
    private static readonly string[] Units = ["appliance.target", "appliance-mon@a.service", "appliance-osd@0.service", "appliance-nbd.service", "appliance-fs@data.service"];

    private string MakeVerifyRoot(string name)
    {
        Tool.Require("systemd-analyze", "systemd");
        var root = package.Scratch(name);
        Directory.CreateDirectory(Path.Combine(root, "usr", "lib", "systemd"));
        Tool.Ok("cp", "-a", "/usr/lib/systemd/system", Path.Combine(root, "usr", "lib", "systemd"));
        Tool.Ok("dpkg-deb", "-x", package.Deb, root);
        Tool.Ok("cp", "/usr/bin/mkdir", Path.Combine(root, "usr", "bin"));
        foreach (var link in new[] { "bin", "lib", "sbin" })
        {
            if (!Path.Exists(Path.Combine(root, link)))
            {
                File.CreateSymbolicLink(Path.Combine(root, link), "usr/" + link);
            }
        }
        return root;
    }

    private static ToolResult Verify(string root, params string[] units) =>
        Tool.Run("systemd-analyze", ["verify", "--man=no", "--root=" + root, .. units], TimeSpan.FromMinutes(1), root);

    [Fact]
    public void Systemd_analyze_verify_accepts_every_unit()
    {
        var root = MakeVerifyRoot("verify");
        var r = Verify(root, Units);
        Assert.True(r.ExitCode == 0 && r.Stderr.Length == 0 && r.Stdout.Length == 0, r.ToString());
    }

    /// <summary>The same verification catches a broken unit: a misspelt value, an unknown key, a relative path.</summary>
    [Fact]
    public void Systemd_analyze_verify_would_catch_a_broken_unit()
    {
        var root = MakeVerifyRoot("verify-broken");
        var unit = Path.Combine(root, "usr", "lib", "systemd", "system", "appliance-nbd.service");
        var text = File.ReadAllText(unit);
        File.WriteAllText(unit, text.Replace("Restart=on-failure", "Restart=on-failur\nRestartSecs=5"));
        var r = Verify(root, "appliance-nbd.service");
        Assert.Contains("on-failur", r.Stderr);
        Assert.Contains("RestartSecs", r.Stderr);
        File.WriteAllText(unit, text.Replace("ExecStart=/usr/bin/appliance", "ExecStart=usr/bin/appliance"));
        Assert.NotEqual(0, Verify(root, "appliance-nbd.service").ExitCode);
    }

    private Dictionary<string, List<string>> Settings(string unit)
    {
        var settings = new Dictionary<string, List<string>>();
        foreach (var raw in File.ReadLines(package.InRoot("usr/lib/systemd/system/" + unit)))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#') || line.StartsWith('['))
            {
                continue;
            }
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            var key = line[..eq];
            if (!settings.TryGetValue(key, out var values))
            {
                settings[key] = values = [];
            }
            values.Add(line[(eq + 1)..]);
        }
        return settings;
    }

    [Theory]
    [InlineData("appliance-mon@.service")]
    [InlineData("appliance-osd@.service")]
    [InlineData("appliance-nbd.service")]
    [InlineData("appliance-fs@.service")]
    public void Every_daemon_restarts_on_failure_after_the_network_under_appliance_target(string unit)
    {
        var s = Settings(unit);
        Assert.Equal(["on-failure"], s["Restart"]);
        Assert.Contains("network-online.target", string.Join(' ', s["After"]));
        Assert.Contains("network-online.target", string.Join(' ', s["Wants"]));
        Assert.Equal(["appliance.target"], s["PartOf"]);
        Assert.Equal(["appliance.target"], s["WantedBy"]);
        Assert.Equal(["yes"], s["NoNewPrivileges"]);
    }

    [Theory]
    [InlineData("appliance-mon@.service", "strict")]
    [InlineData("appliance-nbd.service", "strict")]
    [InlineData("appliance-osd@.service", "full")]
    public void Daemons_are_hardened_where_they_allow_it(string unit, string protectSystem)
    {
        var s = Settings(unit);
        Assert.Equal([protectSystem], s["ProtectSystem"]);
        Assert.Equal(["yes"], s["ProtectHome"]);
        Assert.Equal(["yes"], s["PrivateTmp"]);
        if (unit.StartsWith("appliance-osd", StringComparison.Ordinal))
        {
            // Raw disks: the host's /dev, block devices allowed.
            Assert.False(s.ContainsKey("PrivateDevices"));
            Assert.Equal(["block-* rw"], s["DeviceAllow"]);
        }
        else
        {
            Assert.Equal(["yes"], s["PrivateDevices"]);
        }
    }

    [Fact]
    public void The_mount_unit_stays_in_the_hosts_mount_namespace()
    {
        var s = Settings("appliance-fs@.service");
        foreach (var key in new[] { "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectControlGroups", "ProtectClock", "DeviceAllow" })
        {
            Assert.False(s.ContainsKey(key), $"{key} would give the mount a namespace of its own (or close /dev/fuse)");
        }
    }
}
