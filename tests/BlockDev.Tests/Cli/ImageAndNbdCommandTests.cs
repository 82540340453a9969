using Appliance.Cli;
using Appliance.Cli.Common;

namespace Appliance.BlockDev.Tests.Cli;

/// <summary>`appliance image ...` and `appliance nbd serve`, run in-process through CliApp.RunAsync.</summary>
public sealed class ImageAndNbdCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "imgcli-" + Guid.NewGuid().ToString("N")[..10]);

    public ImageAndNbdCommandTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await CliApp.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Image_create_ls_info_resize_rm_with_clear_refusals()
    {
        var images = Path.Combine(_dir, "images");
        var (code, output, error) = await RunAsync("image", "create", "--local", images, "pool/vm1", "--size", "1G");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("created image pool/vm1: 1073741824 bytes", output);
        Assert.Equal(1L << 30, new FileInfo(Path.Combine(images, "pool", "vm1")).Length);

        (code, _, error) = await RunAsync("image", "create", "--local", images, "pool/vm1", "--size", "1G");
        Assert.Equal(ExitCodes.Refused, code);
        Assert.Contains("already exists", error);
        (code, _, error) = await RunAsync("image", "create", "--local", images, "../evil", "--size", "1M");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("'.'", error);
        (code, _, error) = await RunAsync("image", "create", "--local", images, "x", "--size", "1001");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("multiple of 512", error);

        (code, output, _) = await RunAsync("image", "ls", "--local", images);
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("pool/vm1", output);
        Assert.Contains("1 GiB", output);

        (code, output, _) = await RunAsync("image", "info", "--local", images, "pool/vm1");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("size       1073741824 bytes", output);
        Assert.Contains("allocated  0 bytes", output);

        (code, _, error) = await RunAsync("image", "resize", "--local", images, "pool/vm1", "--size", "512M");
        Assert.Equal(ExitCodes.Refused, code);
        Assert.Contains("--allow-shrink", error);
        (code, output, _) = await RunAsync("image", "resize", "--local", images, "pool/vm1", "--size", "2G");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("now 2147483648 bytes", output);
        (code, _, _) = await RunAsync("image", "resize", "--local", images, "pool/vm1", "--size", "512M", "--allow-shrink");
        Assert.Equal(ExitCodes.Ok, code);

        (code, _, _) = await RunAsync("image", "rm", "--local", images, "pool/vm1");
        Assert.Equal(ExitCodes.Ok, code);
        (code, _, error) = await RunAsync("image", "info", "--local", images, "pool/vm1");
        Assert.Equal(ExitCodes.NotFound, code);
        Assert.Contains("image ls", error);
        (code, _, error) = await RunAsync("image", "ls", "--local", Path.Combine(_dir, "missing"));
        Assert.Equal(ExitCodes.NotFound, code);
    }

    [Fact]
    public async Task Nbd_serve_logs_each_listener_serves_until_cancelled_and_refuses_rm_meanwhile()
    {
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        var images = Path.Combine(_dir, "images");
        Assert.Equal(ExitCodes.Ok, (await RunAsync("image", "create", "--local", images, "disk", "--size", "16M")).Code);
        var socket = Path.Combine(_dir, "nbd.sock");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        using var cts = new CancellationTokenSource();
        var run = CliApp.RunAsync(["nbd", "serve", "--local", images, "--unix", socket, "--listen", "127.0.0.1:0", "--read-only"], stdout, stderr, cts.Token);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!File.Exists(socket) && !run.IsCompleted && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }
        Assert.True(File.Exists(socket), $"server did not start: {stderr}");
        var info = await Tools.RunOkAsync(nbdinfo, [$"nbd+unix:///disk?socket={socket}"]);
        Assert.Contains("is_read_only: true", info.Stdout);
        // While a client has the export open, the image cannot be removed.
        await using (var client = await RawNbdClient.ConnectUnixAsync(socket))
        {
            await client.NegotiateAsync("disk");
            var (code, _, error) = await RunAsync("image", "rm", "--local", images, "disk");
            Assert.True(code == ExitCodes.Refused, $"rm while served: {code} {error}");
            Assert.Contains("stop serving it first", error);
        }
        await cts.CancelAsync();
        Assert.Equal(ExitCodes.Ok, await run.WaitAsync(TimeSpan.FromSeconds(30)));
        var log = stdout.ToString();
        Assert.Contains($"on unix:{socket}", log);
        Assert.Contains("on 127.0.0.1:", log);
        Assert.Contains("1 image of", log);
        Assert.Contains("read-only", log);
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public async Task Nbd_serve_rejects_bad_arguments_with_usage_errors()
    {
        var images = Path.Combine(_dir, "images");
        Directory.CreateDirectory(images);
        var (code, _, error) = await RunAsync("nbd", "serve", "--local", images, "--listen", "nonsense");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("ADDR:PORT", error);
        (code, _, error) = await RunAsync("nbd", "serve", "--local", images, "--tls-required");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--tls-cert", error);
        (code, _, _) = await RunAsync("nbd", "serve", "--local", Path.Combine(_dir, "nope"));
        Assert.Equal(ExitCodes.NotFound, code);
    }
}
