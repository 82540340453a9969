namespace Appliance.Packaging.Tests;

/// <summary>The program, helper, completion and man pages as unpacked from the package into a temporary root.</summary>
[Collection("package")]
public sealed class ProgramTests(PackageFixture package)
{
    private string Program => package.InRoot("usr/bin/appliance");

    /// <summary>The program alone, as on a machine without .NET: an empty environment but a plain PATH.</summary>
    private ToolResult Bare(params string[] args) =>
        Tool.Run("env", ["-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent", Program, .. args], TimeSpan.FromMinutes(1), package.Root);

    [Fact]
    public void The_unpacked_program_runs_version_and_help_without_a_dotnet_install()
    {
        var version = Bare("--version");
        Assert.True(version.ExitCode == 0, version.ToString());
        Assert.StartsWith(package.Version, version.Stdout.Trim()); // 0.1.0+COMMIT
        var help = Bare("--help");
        Assert.True(help.ExitCode == 0, help.ToString());
        foreach (var command in new[] { "mon", "osd", "nbd", "fs", "status", "pool", "image", "object" })
        {
            Assert.Matches($@"(?m)^  {command}\s", help.Stdout);
        }
        Assert.Contains("Exit codes:", help.Stdout);
        var usage = Bare("no-such-command");
        Assert.Equal(2, usage.ExitCode);
    }

    /// <summary>The units start these commands with these options: the program must take each of them.</summary>
    [Theory]
    [InlineData("appliance-mon@.service", "mon run", "--name,--data,--conf-dir")]
    [InlineData("appliance-osd@.service", "osd run", "<id>,--data,--conf-dir,--addr,--host")]
    [InlineData("appliance-nbd.service", "nbd serve", "--unix,--conf-dir,--listen")]
    [InlineData("appliance-fs@.service", "fs mount", "<name>,<mountpoint>,--foreground,--conf-dir,-o")]
    public void Every_unit_runs_a_command_the_program_has(string unit, string command, string options)
    {
        var text = File.ReadAllText(package.InRoot("usr/lib/systemd/system/" + unit));
        Assert.Contains($"ExecStart=/usr/bin/appliance {command} ", text);
        var help = Bare([.. command.Split(' '), "--help"]);
        Assert.True(help.ExitCode == 0, help.ToString());
        foreach (var option in options.Split(','))
        {
            Assert.Contains(option.StartsWith('<') ? option : "  " + option + " ", help.Stdout);
        }
    }

    [Fact]
    public void The_man_page_is_generated_from_help_and_renders_without_warnings()
    {
        Tool.Require("man", "man-db");
        var page = package.InRoot("usr/share/man/man1/appliance.1.gz");
        var roff = Tool.Ok("zcat", page);
        Assert.StartsWith(".TH APPLIANCE 1 ", roff);
        // One subsection per command the help lists, down to the daemons the units run.
        foreach (var path in new[] { "appliance osd run", "appliance mon run", "appliance nbd serve", "appliance fs mount", "appliance pool create" })
        {
            Assert.Contains($".SS \"{path}\"", roff);
        }
        var rendered = Tool.Run("man", ["--warnings", "-E", "UTF-8", "-l", page], TimeSpan.FromMinutes(1), env: new Dictionary<string, string?> { ["MANWIDTH"] = "100", ["MANPAGER"] = "cat", ["PAGER"] = "cat" });
        Assert.True(rendered.ExitCode == 0, rendered.ToString());
        Assert.Equal("", rendered.Stderr);
        Assert.Contains("Run one OSD in the foreground", rendered.Stdout);
        var helper = Tool.Run("man", ["--warnings", "-l", package.InRoot("usr/share/man/man8/mount.appliance.8.gz")], TimeSpan.FromMinutes(1), env: new Dictionary<string, string?> { ["MANPAGER"] = "cat", ["PAGER"] = "cat" });
        Assert.True(helper.ExitCode == 0 && helper.Stderr.Length == 0, helper.ToString());
    }

    /// <summary>Completion as bash runs it: COMP_* set for a line, the completion function called.</summary>
    [Theory]
    [InlineData("appliance osd ru", "run")]
    [InlineData("appliance nbd serve --un", "--unix")]
    [InlineData("appliance po", "pool")]
    public void Bash_completion_asks_the_program(string line, string expected)
    {
        var words = line.Split(' ');
        var script =
            $"source {package.InRoot("usr/share/bash-completion/completions/appliance")}; " +
            $"COMP_LINE='{line}'; COMP_POINT={line.Length}; COMP_WORDS=({line}); COMP_CWORD={words.Length - 1}; " +
            "_appliance; printf '%s\\n' \"${COMPREPLY[@]}\"";
        var r = Tool.Run("bash", ["-c", script], TimeSpan.FromMinutes(1), env: new Dictionary<string, string?>
        {
            ["PATH"] = package.InRoot("usr/bin") + ":/usr/bin:/bin",
        });
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal([expected], r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    private ToolResult Mount(params string[] args) =>
        Tool.Run(package.InRoot("sbin/mount.appliance"), args, TimeSpan.FromMinutes(2), env: new Dictionary<string, string?> { ["APPLIANCE_PROGRAM"] = Program });

    [Fact]
    public void The_mount_helper_turns_mount_options_into_fs_mount()
    {
        var fake = Mount("data", "/mnt/data", "-fv", "-o", "defaults,_netdev,nofail,x-systemd.automount,nosuid,ro,allow_other,conf_dir=/srv/conf,id=client.fs,timeout=7");
        Assert.True(fake.ExitCode == 0, fake.ToString());
        Assert.Equal($"mount.appliance: {Program} fs mount data /mnt/data -o ro,allow_other --conf-dir /srv/conf --id client.fs --timeout 7 --log /var/log/appliance/fs-data.log\n", fake.Stderr);

        var unknown = Mount("data", "/mnt/data", "-f", "-o", "noatime");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("unknown option 'noatime'", unknown.Stderr);
        Assert.Equal(0, Mount("data", "/mnt/data", "-fs", "-o", "noatime").ExitCode); // sloppy
        var suid = Mount("data", "/mnt/data", "-f", "-o", "suid");
        Assert.Equal(1, suid.ExitCode);
        Assert.Contains("always nosuid,nodev", suid.Stderr);
        Assert.Equal(1, Mount("data").ExitCode);
    }

    [Fact]
    public void The_mount_helper_runs_the_program_and_reports_its_failure_as_mount_expects()
    {
        // A configuration directory that does not exist: `appliance fs mount` fails, the helper says 32 (mount failure).
        var scratch = package.Scratch("mount-helper");
        var mountpoint = Directory.CreateDirectory(Path.Combine(scratch, "mnt")).FullName;
        var log = Path.Combine(scratch, "log", "fs.log");
        var r = Mount("data", mountpoint, "-o", $"conf_dir={Path.Combine(scratch, "no-conf")},log={log},timeout=1");
        Assert.Equal(32, r.ExitCode);
        // `fs mount` started its background process, which failed: the program says so and where its log is, and
        // the log (the helper's log= option, its folder made by the helper) holds the reason, naming conf_dir.
        Assert.Contains($"see {log}", r.Stderr);
        Assert.Contains($"no cluster.conf in {Path.Combine(scratch, "no-conf")}", File.ReadAllText(log));
    }
}
