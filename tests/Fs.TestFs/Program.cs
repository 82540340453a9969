using System.Globalization;
using System.Runtime.InteropServices;
using Appliance.Fs.Session;
using Appliance.Fs.TestFs;

// appliance-testfs MOUNTPOINT [--threads N] [--timeout-ms N] [--writeback] [--fusermount] [--attr-timeout-ms N]
// As a user without CAP_SYS_ADMIN it mounts through fusermount3 (allow_other then needs user_allow_other in
// /etc/fuse.conf, or --no-allow-other).
// Mounts the in-memory test filesystem and serves it until it is unmounted (umount, fusermount3 -u) or the
// process gets SIGINT/SIGTERM (then it unmounts cleanly). Prints "mounted MOUNTPOINT" once usable.

if (args.Length < 1 || args[0].StartsWith('-'))
{
    Console.Error.WriteLine("usage: appliance-testfs MOUNTPOINT [--threads N] [--timeout-ms N] [--attr-timeout-ms N] [--writeback] [--fusermount] [--no-allow-other]");
    return 2;
}
var mountPoint = args[0];
var options = new FuseOptions();
var attrTimeout = TimeSpan.FromSeconds(1);
for (var i = 1; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--threads":
            options = options with { Threads = int.Parse(args[++i], CultureInfo.InvariantCulture) };
            break;
        case "--timeout-ms":
            options = options with { OperationTimeout = TimeSpan.FromMilliseconds(int.Parse(args[++i], CultureInfo.InvariantCulture)) };
            break;
        case "--attr-timeout-ms":
            attrTimeout = TimeSpan.FromMilliseconds(int.Parse(args[++i], CultureInfo.InvariantCulture));
            break;
        case "--writeback":
            options = options with { WritebackCache = true };
            break;
        case "--no-allow-other":
            options = options with { AllowOther = false };
            break;
        case "--fusermount":
            options = options with { UseFusermount = true };
            break;
        default:
            Console.Error.WriteLine($"unknown option {args[i]}");
            return 2;
    }
}

var fs = new MemoryFileSystem { EntryTimeout = attrTimeout, AttrTimeout = attrTimeout };
FuseSession session;
try
{
    session = FuseSession.Mount(fs, mountPoint, options);
}
catch (Exception e) when (e is FuseMountException or IOException)
{
    Console.Error.WriteLine($"appliance-testfs: {e.Message}");
    return 1;
}
Console.WriteLine($"mounted {session.MountPoint}");

using var stop = new CancellationTokenSource();
void OnSignal(PosixSignalContext context)
{
    context.Cancel = true; // we exit ourselves, after unmounting
    stop.Cancel();
}
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

try
{
    await session.Completion.WaitAsync(stop.Token);
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine($"appliance-testfs: unmounting {session.MountPoint}");
}
await session.DisposeAsync();
return 0;
