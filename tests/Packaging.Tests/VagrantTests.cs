namespace Appliance.Packaging.Tests;

/// <summary>
/// vagrant/Vagrantfile as Vagrant reads it. Nothing here can boot the VMs; `vagrant validate` loads the file, runs
/// its Ruby and checks every setting, with vagrant-libvirt installed the libvirt provider's settings too (VirtualBox
/// is not in Debian, so its block is checked only as Ruby). Run on a copy in a temporary folder, with a VAGRANT_HOME
/// of its own, so nothing is left behind.
/// </summary>
public sealed class VagrantTests
{
    private static ToolResult Validate(TempDir dir, string provider, params string[] extra)
    {
        return Tool.Run("vagrant", ["validate", .. extra], TimeSpan.FromMinutes(2), dir.Path, new Dictionary<string, string?>
        {
            ["VAGRANT_HOME"] = dir.File("vagrant-home"),
            ["VAGRANT_DEFAULT_PROVIDER"] = provider,
            ["VAGRANT_CHECKPOINT_DISABLE"] = "1",
        });
    }

    private static TempDir CopyOf(Func<string, string>? edit = null)
    {
        var dir = new TempDir();
        var source = Path.Combine(Tool.RepoRoot, "vagrant");
        File.WriteAllText(dir.File("Vagrantfile"), (edit ?? (s => s))(File.ReadAllText(Path.Combine(source, "Vagrantfile"))));
        File.Copy(Path.Combine(source, "provision.sh"), dir.File("provision.sh"));
        return dir;
    }

    [Fact]
    public void Vagrant_validate_accepts_the_vagrantfile()
    {
        Tool.Require("vagrant", "vagrant");
        Assert.True(Directory.Exists("/usr/share/vagrant-plugins/plugins.d") || File.Exists("/usr/share/rubygems-integration/all/specifications/vagrant-libvirt-0.11.2.gemspec") ||
            Tool.Run("dpkg-query", "-W", "vagrant-libvirt").ExitCode == 0, "vagrant-libvirt is not installed: install the Debian package vagrant-libvirt (scripts/test-packages.txt)");
        using var dir = CopyOf();
        var libvirt = Validate(dir, "libvirt");
        Assert.True(libvirt.ExitCode == 0, libvirt.ToString());
        Assert.Contains("Vagrantfile validated successfully", libvirt.Stdout);
        var generic = Validate(dir, "libvirt", "--ignore-provider");
        Assert.True(generic.ExitCode == 0, generic.ToString());
    }

    /// <summary>The same validation refuses a misspelt libvirt setting, so the test above checks the provider block.</summary>
    [Fact]
    public void Vagrant_validate_would_refuse_a_wrong_provider_setting()
    {
        Tool.Require("vagrant", "vagrant");
        using var dir = CopyOf(s => s.Replace("lv.cpus = 2", "lv.cpus = 2\n        lv.memroy = 1", StringComparison.Ordinal));
        var r = Validate(dir, "libvirt");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("memroy", r.Stdout + r.Stderr);
    }
}
