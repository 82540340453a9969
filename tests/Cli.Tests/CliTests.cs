using System.CommandLine;
using System.Diagnostics;
using Appliance.Cli.Common;

namespace Appliance.Cli.Tests;

public sealed class CliTests
{
    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await CliApp.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Help_lists_the_subcommands_and_exit_codes()
    {
        var (code, output, _) = await RunAsync("--help");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("parts", output);
        Assert.Contains("device", output);
        Assert.Contains("Exit codes:", output);
    }

    [Fact]
    public async Task Every_command_at_every_level_has_help()
    {
        var paths = new List<string[]>();
        void Walk(Command command, string[] path)
        {
            paths.Add(path);
            foreach (var sub in command.Subcommands)
            {
                Walk(sub, [.. path, sub.Name]);
            }
        }
        Walk(CliApp.BuildRoot(), []);
        Assert.True(paths.Count > 3);
        foreach (var path in paths)
        {
            var (code, output, error) = await RunAsync([.. path, "--help"]);
            Assert.True(code == ExitCodes.Ok, $"'{string.Join(' ', path)} --help' exited {code}: {error}");
            Assert.Contains("Usage:", output);
        }
    }

    [Fact]
    public async Task An_unknown_subcommand_is_a_usage_error_that_points_to_help()
    {
        var (code, _, error) = await RunAsync("frobnicate");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("frobnicate", error);
        Assert.Contains("appliance --help", error);
    }

    [Fact]
    public async Task A_missing_subcommand_or_option_is_a_usage_error()
    {
        Assert.Equal(ExitCodes.Usage, (await RunAsync()).Code);
        Assert.Equal(ExitCodes.Usage, (await RunAsync("device")).Code);
        var (code, _, error) = await RunAsync("device", "create", "/tmp/x");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--size", error);
        Assert.Contains("appliance device create --help", error);
    }

    [Fact]
    public async Task Version_is_printed()
    {
        var (code, output, _) = await RunAsync("--version");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Matches(@"^\d+\.\d+\.\d+", output.Trim());
    }

    [Fact]
    public async Task Parts_names_every_folder_of_the_design()
    {
        var (code, output, _) = await RunAsync("parts");
        Assert.Equal(ExitCodes.Ok, code);
        foreach (var folder in new[] { "crush", "node/Store", "node/Wire", "node/Monitor", "node/Maps", "node/Osd", "node/Client", "blockdev", "fs", "packaging", "vagrant" })
        {
            Assert.Contains(folder, output);
        }
    }

    [Fact]
    public async Task Device_create_then_info_and_the_errors_around_them()
    {
        var dir = Path.Combine(Path.GetTempPath(), "appliance-cli-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var disk = Path.Combine(dir, "disk.img");
            var created = await RunAsync("device", "create", disk, "--size", "64M");
            Assert.Equal(ExitCodes.Ok, created.Code);
            Assert.Equal(64L << 20, new FileInfo(disk).Length);

            var info = await RunAsync("device", "info", disk);
            Assert.Equal(ExitCodes.Ok, info.Code);
            Assert.Contains("regular file", info.Out);
            Assert.Contains("67108864 bytes", info.Out);

            var again = await RunAsync("device", "create", disk, "--size", "64M");
            Assert.Equal(ExitCodes.Refused, again.Code);
            Assert.Contains("already exists", again.Err);

            var missing = await RunAsync("device", "info", Path.Combine(dir, "nope"));
            Assert.Equal(ExitCodes.NotFound, missing.Code);

            var badSize = await RunAsync("device", "create", Path.Combine(dir, "d2"), "--size", "lots");
            Assert.Equal(ExitCodes.Usage, badSize.Code);
            Assert.Contains("64M", badSize.Err);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("512K", 512L << 10)]
    [InlineData("64M", 64L << 20)]
    [InlineData("10G", 10L << 30)]
    [InlineData("1T", 1L << 40)]
    [InlineData("1.5G", 3L << 29)]
    [InlineData("2GiB", 2L << 30)]
    public void Sizes_parse_like_people_write_them(string text, long bytes)
    {
        Assert.True(ByteSize.TryParse(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("")]
    [InlineData("G")]
    [InlineData("-1")]
    [InlineData("12X")]
    [InlineData("99999999999P")]
    public void Non_sizes_are_refused(string text) => Assert.False(ByteSize.TryParse(text, out _));

    [Fact]
    public void The_real_program_exits_with_the_usage_code_on_a_bad_command()
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "appliance.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(dll);
        psi.ArgumentList.Add("no-such-command");
        using var p = Process.Start(psi)!;
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(ExitCodes.Usage, p.ExitCode);
        Assert.Contains("no-such-command", error);
    }
}
