import { IsIn } from 'class-validator';

/** The dev-only confirm route's body: how the simulated customer's payment app answers. */
export class ConfirmIntentDto {
  @IsIn(['succeeded', 'failed'])
  outcome!: 'succeeded' | 'failed';
}
