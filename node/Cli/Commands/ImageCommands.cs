using System.CommandLine;
using Appliance.BlockDev.Images;
using Appliance.Cli.Common;

namespace Appliance.Cli.Commands;

/// <summary>`appliance image ...`: create, list, remove, resize and inspect block images (local ones for now).</summary>
public static class ImageCommands
{
    public static Command Create()
    {
        var image = new Command("image", "Manage block images served over NBD. Local images are sparse files in a directory (--local DIR).");
        image.Subcommands.Add(CreateImage());
        image.Subcommands.Add(List());
        image.Subcommands.Add(Remove());
        image.Subcommands.Add(Resize());
        image.Subcommands.Add(Info());
        return image;
    }

    internal static Option<string> LocalOption() =>
        new("--local") { Description = "The directory holding local images (image 'pool/name' is the file DIR/pool/name).", Required = true };

    private static Argument<string> NameArgument() =>
        new("name") { Description = "The image name: components of letters, digits, '.', '_', '-', '+', separated by '/' (e.g. rbd/vm1)." };

    private static Option<string> SizeOption(string description) => new("--size") { Description = description, Required = true };

    private static Command CreateImage()
    {
        var local = LocalOption();
        var name = NameArgument();
        var size = SizeOption("The size: 512 bytes to petabytes, a multiple of 512 (10G, 512M...). Space is allocated as data is written.");
        var command = new Command("create", "Create a thin-provisioned image.") { local, name, size };
        command.SetAction((parse, ct) =>
        {
            var dir = parse.GetRequiredValue(local);
            var bytes = ByteSize.Parse(parse.GetRequiredValue(size), "--size");
            Directory.CreateDirectory(dir);
            var info = Run(() => new LocalImageStore(dir).Create(parse.GetRequiredValue(name), bytes));
            parse.InvocationConfiguration.Output.WriteLine($"created image {info.Name}: {info.Size} bytes ({ByteSize.Format(info.Size)}), thin-provisioned, file {info.Path}");
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    private static Command List()
    {
        var local = LocalOption();
        var command = new Command("ls", "List the images: name, size, allocated bytes.") { local };
        command.SetAction((parse, ct) =>
        {
            var images = Run(() => new LocalImageStore(parse.GetRequiredValue(local)).List());
            var output = parse.InvocationConfiguration.Output;
            if (images.Count == 0)
            {
                output.WriteLine("no images; create one with 'appliance image create --local DIR NAME --size 10G'");
                return Task.FromResult(ExitCodes.Ok);
            }
            var width = Math.Max(4, images.Max(i => i.Name.Length));
            output.WriteLine($"{"NAME".PadRight(width)}  {"SIZE",12}  {"ALLOCATED",12}");
            foreach (var i in images)
            {
                output.WriteLine($"{i.Name.PadRight(width)}  {ByteSize.Format(i.Size),12}  {ByteSize.Format(i.AllocatedBytes),12}");
            }
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    private static Command Remove()
    {
        var local = LocalOption();
        var name = NameArgument();
        var command = new Command("rm", "Delete an image and its data (refused while an NBD server has it open).") { local, name };
        command.SetAction((parse, ct) =>
        {
            var n = parse.GetRequiredValue(name);
            Run(() =>
            {
                new LocalImageStore(parse.GetRequiredValue(local)).Remove(n);
                return 0;
            });
            parse.InvocationConfiguration.Output.WriteLine($"removed image {n}");
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    private static Command Resize()
    {
        var local = LocalOption();
        var name = NameArgument();
        var size = SizeOption("The new size (a multiple of 512).");
        var allowShrink = new Option<bool>("--allow-shrink") { Description = "Allow a smaller size: the data past the new end is dropped." };
        var command = new Command("resize", "Change the size of an image (refused while an NBD server has it open).") { local, name, size, allowShrink };
        command.SetAction((parse, ct) =>
        {
            var bytes = ByteSize.Parse(parse.GetRequiredValue(size), "--size");
            var info = Run(() => new LocalImageStore(parse.GetRequiredValue(local)).Resize(parse.GetRequiredValue(name), bytes, parse.GetValue(allowShrink)));
            parse.InvocationConfiguration.Output.WriteLine($"image {info.Name} is now {info.Size} bytes ({ByteSize.Format(info.Size)})");
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    private static Command Info()
    {
        var local = LocalOption();
        var name = NameArgument();
        var command = new Command("info", "Show an image's size and how much of it is allocated.") { local, name };
        command.SetAction((parse, ct) =>
        {
            var info = Run(() => new LocalImageStore(parse.GetRequiredValue(local)).Info(parse.GetRequiredValue(name)));
            var output = parse.InvocationConfiguration.Output;
            output.WriteLine($"name       {info.Name}");
            output.WriteLine($"size       {info.Size} bytes ({ByteSize.Format(info.Size)})");
            output.WriteLine($"allocated  {info.AllocatedBytes} bytes ({ByteSize.Format(info.AllocatedBytes)})");
            output.WriteLine($"file       {info.Path}");
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    /// <summary>Runs a catalog operation, turning its refusals into CLI errors with the matching exit code.</summary>
    internal static T Run<T>(Func<T> operation)
    {
        try
        {
            return operation();
        }
        catch (ImageCatalogException e)
        {
            var code = e.Error switch
            {
                ImageCatalogError.InvalidName or ImageCatalogError.InvalidSize => ExitCodes.Usage,
                ImageCatalogError.NotFound => ExitCodes.NotFound,
                _ => ExitCodes.Refused,
            };
            throw new CliException(code, e.Message);
        }
    }
}
