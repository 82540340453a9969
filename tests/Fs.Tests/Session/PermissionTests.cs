using Appliance.Fs.TestFs;
using Appliance.Platform.Native;

namespace Appliance.Fs.Tests.Session;

/// <summary>Permissions and ownership as root and as the unprivileged user nobody (default_permissions and
/// allow_other: the kernel checks against the attributes the filesystem returns).</summary>
public class PermissionTests
{
    [Fact]
    public async Task Unprivileged_user_owns_what_it_creates_and_is_refused_the_rest()
    {
        await using var m = TestMount.Start();
        File.WriteAllText(m.P("roots"), "secret");
        Posix.chmod(m.P("roots"), 0x180); // 0600
        File.WriteAllText(m.P("public"), "hello");
        Posix.chmod(m.P("public"), 0x1A4); // 0644
        Directory.CreateDirectory(m.P("closed"));
        Posix.chmod(m.P("closed"), 0x1ED); // 0755

        Shell.Ok($"echo mine > {m.P("mine")} && mkdir {m.P("mydir")}", asNobody: true);
        Assert.Equal($"{Shell.Nobody} {Shell.Nobody} 644", Shell.Ok($"stat -c '%u %g %a' {m.P("mine")}").Trim());
        Assert.Equal($"{Shell.Nobody} {Shell.Nobody}", Shell.Ok($"stat -c '%u %g' {m.P("mydir")}").Trim());

        Assert.Equal("hello", Shell.Ok($"cat {m.P("public")}", asNobody: true));
        var (exit, _, err) = Shell.Run($"cat {m.P("roots")}", asNobody: true);
        Assert.NotEqual(0, exit);
        Assert.Contains("Permission denied", err);
        Assert.Contains("Permission denied", Shell.Run($"echo x >> {m.P("public")}", asNobody: true).Err);
        Assert.Contains("Permission denied", Shell.Run($"touch {m.P("closed/x")}", asNobody: true).Err);
        Assert.Contains("Operation not permitted", Shell.Run($"chmod 777 {m.P("public")}", asNobody: true).Err);
        Assert.Contains("Operation not permitted", Shell.Run($"chown {Shell.Nobody} {m.P("public")}", asNobody: true).Err);
        Assert.Equal("hello", File.ReadAllText(m.P("public")));

        // The owner may change its own file's mode; root reads anything and may give files away.
        Shell.Ok($"chmod 600 {m.P("mine")}", asNobody: true);
        Assert.Equal("mine\n", File.ReadAllText(m.P("mine")));
        Posix.lchown(m.P("public"), Shell.Nobody, Shell.Nobody);
        Shell.Ok($"echo more >> {m.P("public")}", asNobody: true);
    }

    [Fact]
    public async Task Sticky_directories_protect_other_users_files()
    {
        await using var m = TestMount.Start();
        Directory.CreateDirectory(m.P("tmp"));
        Posix.chmod(m.P("tmp"), 0x3FF); // 1777
        File.WriteAllText(m.P("tmp/roots"), "r");
        Assert.Contains("Operation not permitted", Shell.Run($"rm -f {m.P("tmp/roots")}", asNobody: true).Err);
        Assert.True(File.Exists(m.P("tmp/roots")));
        Shell.Ok($"touch {m.P("tmp/mine")} && rm {m.P("tmp/mine")}", asNobody: true);
    }

    [Fact]
    public async Task Setgid_directories_pass_their_group_on()
    {
        await using var m = TestMount.Start(new MemoryFileSystem());
        Directory.CreateDirectory(m.P("shared"));
        Posix.lchown(m.P("shared"), 0, 4242);
        Posix.chmod(m.P("shared"), 0x5FF); // 2777
        Shell.Ok($"touch {m.P("shared/f")} && mkdir {m.P("shared/d")}", asNobody: true);
        Assert.Equal("4242", Shell.Ok($"stat -c %g {m.P("shared/f")}").Trim());
        Assert.Equal("4242 2755", Shell.Ok($"stat -c '%g %a' {m.P("shared/d")}").Trim());
    }

    [Fact]
    public async Task Writing_clears_setuid_for_non_owners()
    {
        await using var m = TestMount.Start();
        File.WriteAllText(m.P("prog"), "x");
        Posix.chmod(m.P("prog"), 0x9FF); // 4777
        Shell.Ok($"echo y >> {m.P("prog")}", asNobody: true);
        Assert.Equal("777", Shell.Ok($"stat -c %a {m.P("prog")}").Trim());
    }
}
